#!/usr/bin/env bash
# The test command: install what is missing, then build and run everything CI runs.
#   0. gcc release build (what scripts/demo.sh builds), compiled only
#   1. gcc build: the whole suite (api, kernels, abi, consumers, tool, demo)
#   2. the same API and kernel tests with QN_ISA=scalar
#   3. clang build (-Werror) and its API and kernel tests
#   4. ASan+UBSan build and its API and kernel tests (and the concurrency stress test)
#   5. valgrind (QN_ISA=avx2) over the API and kernel tests
#   6. valgrind (QN_ISA=scalar) over the api, quant and format suites
#   7. ThreadSanitizer build (clang, OpenMP off) and the concurrency stress test
#   8. libFuzzer build (clang, -Dfuzz=enabled): the corpus replay, then tests/fuzz/run.sh
#      (QN_FUZZ_SECONDS per target, default 60)
# Ends with one line "N passed, N failed" over all runs (each fuzz target counts as one test).
# Exit status 0 only if all pass. docs/reliability.md says what each run proves.
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
  local dir=$1 label=$2 t0=$SECONDS; shift 2
  echo "=== $label"
  if meson test -C "$dir" --print-errorlogs --num-processes 2 "$@"; then :; else echo "!!! $label had failures"; fi
  count "$dir" "$label"
  summary[-1]="${summary[-1]} ($((SECONDS - t0)) s)"
}

# 0. the release build the README's main job makes (-O3 brings warnings of its own; -Werror)
setup "$out/release" -Dbuildtype=release -Dtests=disabled -Ddemo=enabled
meson compile -C "$out/release"
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
  run "$out/clang" "clang: api+kernels+quant+format+tool+examples+stress" --suite api --suite kernels --suite quant \
    --suite format --suite tool --suite examples --suite stress
fi
# 4. ASan + UBSan
setup "$out/asan" -Dbuildtype=debug -Db_sanitize=address,undefined -Db_lundef=false \
  -Dc_args=-fno-sanitize-recover=all -Dcpp_args=-fno-sanitize-recover=all
meson compile -C "$out/asan"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  run "$out/asan" "asan+ubsan: api+kernels+quant+format+tool+examples+stress" --suite api --suite kernels --suite quant \
    --suite format --suite tool --suite examples --suite stress
# 5. valgrind
if command -v valgrind >/dev/null; then
  run "$out/gcc" "valgrind (QN_ISA=avx2): api+kernels+quant+format+examples" --setup valgrind --suite api --suite kernels \
    --suite quant --suite format --suite examples
fi
# 6. valgrind with the scalar kernels
if command -v valgrind >/dev/null; then
  run "$out/gcc" "valgrind (QN_ISA=scalar): api+quant+format" --setup valgrindscalar --suite api --suite quant \
    --suite format
fi
# 7. ThreadSanitizer: many threads on distinct layers, compressions and one shared compressed tensor.
#    OpenMP is off: the OpenMP runtime is not instrumented and would give false reports.
if command -v clang >/dev/null; then
  CC=clang CXX=clang++ setup "$out/tsan" -Dbuildtype=debugoptimized -Db_sanitize=thread -Db_lundef=false \
    -Dopenmp=disabled
  meson compile -C "$out/tsan" tests/test_stress
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 CK_FORK=no \
    run "$out/tsan" "tsan: stress" --no-rebuild --suite stress
fi
# 8. libFuzzer: replay the committed corpus (fast), then fuzz every target for a bounded time
if command -v clang >/dev/null; then
  CC=clang CXX=clang++ setup "$out/fuzz" -Dbuildtype=debugoptimized -Dfuzz=enabled
  fuzz_exes=(tests/fuzz/fuzz_gguf tests/fuzz/fuzz_qtensor)
  if pkg-config --exists jansson; then fuzz_exes+=(tests/fuzz/fuzz_safetensors); fi
  meson compile -C "$out/fuzz" "${fuzz_exes[@]}"
  run "$out/fuzz" "fuzz: corpus replay" --no-rebuild --suite fuzz
  echo "=== fuzz: ${QN_FUZZ_SECONDS:-60} s per target"
  fuzz_t0=$SECONDS
  fuzz_log="$out/fuzz/fuzz-run.log"
  fuzz_status=0
  rm -rf "$out/fuzz/fuzz-work"
  QN_FUZZ_SECONDS=${QN_FUZZ_SECONDS:-60} QN_FUZZ_OUT="$out/fuzz/fuzz-work" bash tests/fuzz/run.sh "$out/fuzz" \
    >"$fuzz_log" 2>&1 || fuzz_status=$?
  cat "$fuzz_log"
  fuzz_secs=$((SECONDS - fuzz_t0))
  fp=$(grep -c '^fuzz .*: ok$' "$fuzz_log" || true)
  ff=$(grep -c '^fuzz .*: FAILED' "$fuzz_log" || true)
  if [ "$fuzz_status" -ne 0 ] && [ "$ff" -eq 0 ]; then ff=1; fi
  passed=$((passed + fp))
  failed=$((failed + ff))
  summary+=("fuzz: run.sh: $fp passed, $ff failed (${fuzz_secs} s)")
fi

echo
for s in "${summary[@]}"; do echo "  $s"; done
echo "  total: $SECONDS s (builds included)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
