#!/usr/bin/env bash
# The registry example in README.md must be exactly examples/readme_example.c (which the
# build compiles): extract the block after the marker and compare.
set -euo pipefail
src=$1
block=$(awk '/<!-- readme-example: examples\/readme_example.c -->/{f=1; next} f && /^```c$/{p=1; next} p && /^```$/{exit} p' "$src/README.md")
if [[ -z "$block" ]]; then echo "FAIL: no readme-example block in README.md"; exit 1; fi
if ! diff <(printf '%s\n' "$block") "$src/examples/readme_example.c"; then
  echo "FAIL: README.md's example differs from examples/readme_example.c"; exit 1
fi
echo "1 passed, 0 failed"
