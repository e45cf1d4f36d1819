#!/usr/bin/env bash
# The test command: install what is missing, then build and run everything CI runs.
#   1. gcc build: the whole suite (api, kernels, abi, consumers, tool)
#   2. the same API and kernel tests with QN_ISA=scalar
#   3. clang build (-Werror) and its API and kernel tests
#   4. ASan+UBSan build and its API and kernel tests
#   5. valgrind (QN_ISA=avx2) over the API and kernel tests
# Ends with one line "N passed, N failed" over all runs. Exit status 0 only if all pass.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bash scripts/install-deps.sh

out=${QN_TEST_DIR:-$root/build-test}
mkdir -p "$out"
passed=0
failed=0
summary=()

count() { # count DIR LABEL: add the results of the last meson test run in DIR
  local line
  local log
  log=$(ls -t "$1"/meson-logs/testlog*.json | head -n 1)
  line=$(python3 - "$log" <<'PY'
import json, sys
p = f = 0
for raw in open(sys.argv[1]):
    r = json.loads(raw)
    if r.get("result") in ("OK", "EXPECTEDFAIL", "SKIP"):
        p += 1
    else:
        f += 1
print(p, f)
PY
)
  set -- $line "$2"
  passed=$((passed + $1))
  failed=$((failed + $2))
  summary+=("$3: $1 passed, $2 failed")
}

setup() { # setup DIR [meson args...]
  local dir=$1; shift
  if [ -f "$dir/build.ninja" ]; then
    meson setup --reconfigure "$dir" "$@" >/dev/null
  else
    meson setup "$dir" "$@" >/dev/null
  fi
}

run() { # run DIR LABEL [meson test args...]
  local dir=$1 label=$2; shift 2
  echo "=== $label"
  if meson test -C "$dir" --print-errorlogs --num-processes 2 "$@"; then :; else echo "!!! $label had failures"; fi
  count "$dir" "$label"
}

# 1. gcc, everything (the interop suite: an npm reader, run here only)
setup "$out/gcc" -Dbuildtype=debugoptimized
meson compile -C "$out/gcc"
run "$out/gcc" "gcc: all suites"
# 2. scalar kernels only
run "$out/gcc" "gcc: QN_ISA=scalar" --setup scalar --suite api --suite kernels --suite quant --suite format --suite examples
# 3. clang
if command -v clang >/dev/null; then
  CC=clang CXX=clang++ setup "$out/clang" -Dbuildtype=debugoptimized
  meson compile -C "$out/clang"
  run "$out/clang" "clang: api+kernels+quant+format+tool+examples" --suite api --suite kernels --suite quant \
    --suite format --suite tool --suite examples
fi
# 4. ASan + UBSan
setup "$out/asan" -Dbuildtype=debug -Db_sanitize=address,undefined -Db_lundef=false \
  -Dc_args=-fno-sanitize-recover=all -Dcpp_args=-fno-sanitize-recover=all
meson compile -C "$out/asan"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  run "$out/asan" "asan+ubsan: api+kernels+quant+format+tool+examples" --suite api --suite kernels --suite quant \
    --suite format --suite tool --suite examples
# 5. valgrind
if command -v valgrind >/dev/null; then
  run "$out/gcc" "valgrind (QN_ISA=avx2): api+kernels+quant+format+examples" --setup valgrind --suite api --suite kernels \
    --suite quant --suite format --suite examples
fi

echo
for s in "${summary[@]}"; do echo "  $s"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
