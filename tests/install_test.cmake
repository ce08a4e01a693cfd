# The test "install: an external project finds the installed package": installs the build into a
# temporary prefix (a copy, no rebuild), then configures and builds examples/external/ with
# find_package(mambagrad), with the MLP and custom-op examples too, and runs the three programs. Run by CTest with -DBUILD_DIR, -DSOURCE_DIR, -DWORK_DIR,
# -DCXX (the compiler of this build).
file(REMOVE_RECURSE "${WORK_DIR}")
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
endfunction()
run(${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${WORK_DIR}/prefix")
foreach(f include/mambagrad/models/mamba.h include/mambagrad/core/tensor.h include/mambagrad/ops/function.h
          include/mambagrad/introspect/profiler.h
          lib/cmake/mambagrad/mambagrad-config.cmake)
  if(NOT EXISTS "${WORK_DIR}/prefix/${f}")
    message(FATAL_ERROR "cmake --install did not install ${f}")
  endif()
endforeach()
run(${CMAKE_COMMAND} -S "${SOURCE_DIR}/examples/external" -B "${WORK_DIR}/build" -DCMAKE_BUILD_TYPE=Release
    "-DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix" "-DCMAKE_CXX_COMPILER=${CXX}" "-DMG_EXAMPLES_DIR=${SOURCE_DIR}/examples")
run(${CMAKE_COMMAND} --build "${WORK_DIR}/build")
run("${WORK_DIR}/build/external_main")
run("${WORK_DIR}/build/external_mlp")
run("${WORK_DIR}/build/external_custom_op")
file(REMOVE_RECURSE "${WORK_DIR}")
message(STATUS "the external project built against the installed package, its MLP fitted and its custom op trained")
