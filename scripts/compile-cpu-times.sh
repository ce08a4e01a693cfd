#!/usr/bin/env bash
# Where a build's compile time goes, in CPU time (user + system) per object, which other work on the
# machine hardly changes (wall time does). Use it as the compiler launcher of a fresh build folder:
#   cmake -B build-t -G Ninja -DCMAKE_CXX_COMPILER_LAUNCHER=$PWD/scripts/compile-cpu-times.sh [options]
#   MG_CPU_TIMES=$PWD/times.txt cmake --build build-t -j2
#   sort -rn times.txt | head                  # the slowest objects
#   awk '{s += $1 + $2} END {print s}' times.txt  # the whole build's compile CPU seconds
# Each compile appends "user sys wall object" to $MG_CPU_TIMES (default: compile-times.txt here).
out=unknown prev=
for a in "$@"; do
  [ "$prev" = "-o" ] && out=$a
  prev=$a
done
exec /usr/bin/time -a -o "${MG_CPU_TIMES:-$PWD/compile-times.txt}" -f "%U %S %e $out" "$@"
