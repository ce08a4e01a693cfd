# Read by CTest after the discovered cases (CMakeLists.txt: TEST_INCLUDE_FILES). Under `ctest -j` a case of
# higher COST starts first. The CUDA training cases take minutes on the emulator under the sanitizers (CI's
# second build), far longer than any other: started last, one of them would run alone on one core at the end;
# started first, the other cases fill the other core meanwhile.
foreach(name IN LISTS mg_tests_TESTS)
  if(name MATCHES "^cuda (training|trainer|distributed): ")
    set_tests_properties("${name}" PROPERTIES COST 1000)
  endif()
endforeach()
