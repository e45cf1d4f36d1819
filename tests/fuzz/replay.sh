#!/bin/sh
# Replays every file of a fuzz target's corpus once (no fuzzing): a crash, leak, timeout or
# sanitizer report on any of them fails the test. usage: replay.sh FUZZ_BINARY CORPUS_DIR
# SPDX-License-Identifier: MIT
set -u
exe=$1
dir=$2
[ -d "$dir" ] || { echo "no corpus directory $dir"; exit 1; }
n=$(find "$dir" -type f | wc -l)
[ "$n" -gt 0 ] || { echo "empty corpus $dir"; exit 1; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# -runs=0 after a corpus directory: libFuzzer executes every input once, then stops
"$exe" -runs=0 -rss_limit_mb=2048 -timeout=60 -print_final_stats=1 "$dir" >"$log" 2>&1
status=$?
tail -n 40 "$log"
if [ $status -eq 0 ] && grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:' "$log"; then
    status=1
fi
echo "replayed $n inputs of $dir: exit $status"
exit $status
