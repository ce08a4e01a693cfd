#!/usr/bin/env bash
# Formats every tracked C++ and CUDA source with clang-format and the root .clang-format.
#   scripts/format.sh          rewrite the files in place
#   scripts/format.sh --check  change nothing; list the files that differ and exit 1 if any do (CI runs this)
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.cpp' '*.h' '*.cu' '*.cuh')
if [ "${1:-}" = "--check" ]; then
  clang-format --dry-run --Werror "${files[@]}" 2>&1 | grep -o '^[^:]*:[0-9]*:[0-9]*: error' | cut -d: -f1 | sort -u \
    > /tmp/mg-format-$$.txt || true
  if [ -s /tmp/mg-format-$$.txt ]; then
    echo "these files are not formatted (run scripts/format.sh):"; cat /tmp/mg-format-$$.txt; rm -f /tmp/mg-format-$$.txt
    exit 1
  fi
  rm -f /tmp/mg-format-$$.txt
  echo "all ${#files[@]} sources formatted"
else
  clang-format -i "${files[@]}"
fi
