# Rewrites a .cu file (or a .cuh header) into C++ for the CUDA emulator (cmake -DIN=x.cu -DOUT=x.cpp -P translate.cmake):
#   name<targs><<<grid, block, smem, stream>>>(args)  ->  ::mg_emu::launch(name<targs>, "name<targs>", grid, block, smem, stream)(args)
#   extern __shared__ __align__(16) T x[];            ->  T* x = reinterpret_cast<T*>(::mg_emu::dynamic_smem());
#   __shared__ T x[n][m];                             ->  MG_EMU_SHARED(T, x, [n][m]);  (the race check's accesses)
# Line numbers are kept (a #line directive points errors and debuggers at the .cu file).
file(READ "${IN}" src)
string(REGEX REPLACE "([A-Za-z_][A-Za-z0-9_:]*(<[^<>;(){}]*>)?)[ \t\n]*<<<" "::mg_emu::launch(\\1, \"\\1\", " src "${src}")
string(REPLACE ">>>" ")" src "${src}")
string(REGEX REPLACE "extern[ \t]+__shared__[ \t]+(__align__\\([0-9]+\\)[ \t]+)?([A-Za-z_][A-Za-z0-9_ ]*[A-Za-z0-9_])[ \t]+([A-Za-z_][A-Za-z0-9_]*)\\[\\];"
       "\\2* \\3 = reinterpret_cast<\\2*>(::mg_emu::dynamic_smem());" src "${src}")
# (Optional parts sit inside groups that always match: CMake rejects a reference to a group that did not.)
string(REGEX REPLACE "__shared__[ \t]+((__align__\\([0-9]+\\)[ \t]+)?)([A-Za-z_]([A-Za-z0-9_ ]*[A-Za-z0-9_])?)[ \t]+([A-Za-z_][A-Za-z0-9_]*)[ \t]*((\\[[^;]*\\])?);"
       "\\1MG_EMU_SHARED(\\3, \\5, \\6);" src "${src}")
file(WRITE "${OUT}.tmp" "#line 1 \"${IN}\"\n${src}")
file(RENAME "${OUT}.tmp" "${OUT}")
