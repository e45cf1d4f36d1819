#!/usr/bin/env bash
# Fuzz every target of a -Dfuzz=enabled build for a bounded time, starting from the committed
# seed corpus; fail on any crash, leak, timeout, out-of-memory or sanitizer report.
#
#   tests/fuzz/run.sh BUILD_DIR [TARGET...]      (targets: gguf safetensors qtensor; default all built)
#
# Environment: QN_FUZZ_SECONDS (per target, default 60), QN_FUZZ_MAX_LEN (bytes, default 16384: four times the largest seed),
# QN_FUZZ_RSS_MB (default 2048; also the largest single allocation), QN_FUZZ_OUT (work directory,
# default a temporary one: new corpus entries, logs and any crash artifacts land there),
# QN_FUZZ_JOBS (parallel targets, default 1).
# A crash is kept as OUT/<target>/crash-* : add it to tests/fuzz/corpus/<target>/ as a regression
# input (named regress-<what>) once the library is fixed.
# Prints one line per target: executions, coverage (cov, ft), corpus size, result.
# SPDX-License-Identifier: MIT
set -uo pipefail
build=${1:?usage: run.sh BUILD_DIR [TARGET...]}
shift
src=$(cd "$(dirname "$0")" && pwd)
secs=${QN_FUZZ_SECONDS:-60}
max_len=${QN_FUZZ_MAX_LEN:-16384}
rss=${QN_FUZZ_RSS_MB:-2048}
out=${QN_FUZZ_OUT:-}
if [ -z "$out" ]; then
    out=$(mktemp -d /tmp/qn_fuzz_XXXXXX)
fi
mkdir -p "$out"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for t in gguf safetensors qtensor; do
        [ -x "$build/tests/fuzz/fuzz_$t" ] && targets+=("$t")
    done
fi
[ ${#targets[@]} -gt 0 ] || { echo "no fuzz targets in $build (configure with CC=clang -Dfuzz=enabled)"; exit 1; }

fuzz_one() { # fuzz_one TARGET: fuzz, then print the summary line; exit status 0 only when clean
    local t=$1 exe="$build/tests/fuzz/fuzz_$t" work="$out/$t" dict=()
    mkdir -p "$work/corpus"
    [ -f "$src/$t.dict" ] && dict=(-dict="$src/$t.dict")
    # the first directory receives new inputs; the committed corpus is only read
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
        "$exe" -max_total_time="$secs" -max_len="$max_len" -rss_limit_mb="$rss" -malloc_limit_mb="$rss" \
        -timeout=25 -print_final_stats=1 -artifact_prefix="$work/" "${dict[@]}" \
        "$work/corpus" "$src/corpus/$t" >"$work/log" 2>&1
    local status=$?
    local execs cov ft units
    execs=$(grep -a 'stat::number_of_executed_units' "$work/log" | awk '{print $2}' | tail -n 1)
    cov=$(grep -aoE 'cov: [0-9]+' "$work/log" | tail -n 1 | awk '{print $2}')
    ft=$(grep -aoE 'ft: [0-9]+' "$work/log" | tail -n 1 | awk '{print $2}')
    units=$(find "$work/corpus" -type f | wc -l)
    if [ $status -eq 0 ] && grep -aqE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|SUMMARY: ' "$work/log"; then
        status=1
    fi
    if [ $status -eq 0 ]; then
        echo "fuzz $t: ${execs:-?} executions in ${secs} s, cov ${cov:-?}, ft ${ft:-?}, $units new corpus inputs: ok"
    else
        echo "fuzz $t: FAILED (exit $status) after ${execs:-?} executions; log $work/log, artifacts:"
        ls "$work" | grep -E '^(crash|leak|timeout|oom|slow-unit)-' | sed "s|^|  $work/|"
        grep -aE -A 30 'ERROR: |runtime error:' "$work/log" | head -n 60
    fi
    return $status
}

fail=0
jobs=${QN_FUZZ_JOBS:-1}
if [ "$jobs" -le 1 ]; then
    for t in "${targets[@]}"; do
        fuzz_one "$t" || fail=1
    done
else
    pids=()
    for t in "${targets[@]}"; do
        fuzz_one "$t" >"$out/$t.summary" 2>&1 &
        pids+=($!)
        while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 1; done
    done
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || fail=1
        cat "$out/${targets[$i]}.summary"
    done
fi
echo "fuzz work directory: $out"
exit $fail
