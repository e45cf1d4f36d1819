#!/bin/bash
# End-to-end test of the qnoise tool on a safetensors file generated here by
# an independent writer (tests/tool/make_model.py, standard-library Python).
# usage: run.sh QNOISE_BINARY SOURCE_DIR
# SPDX-License-Identifier: MIT
set -u
Q=$1
SRC=$2
PY=$(command -v python3 || true)
if [ -z "$PY" ]; then
    echo "skipped: python3 is needed to generate the test model"
    exit 77
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0
check() { # description, then the command's status must equal $want
    if [ "$got" != "$want" ]; then
        echo "FAIL: $1 (exit $got, expected $want)"
        fail=1
    else
        echo "ok: $1"
    fi
}
contains() { # file, text
    if ! grep -qF -- "$2" "$1"; then
        echo "FAIL: '$2' not in $1:"
        cat "$1"
        fail=1
    fi
}

"$PY" "$SRC/tests/tool/make_model.py" "$T/model.safetensors" || exit 1

# --- compress (PQ), info, decompress, stats -------------------------------------------------------
"$Q" compress "$T/model.safetensors" -o "$T/m.gguf" --block-size 8 --centroids 16 --seed 3 >"$T/out" 2>"$T/err"
got=$? want=0 check "compress pq"
contains "$T/out" "fc1.weight [64, 32] fp32"
contains "$T/out" "SNR"
contains "$T/out" "fc1.bias [64] fp32 0.000 MiB kept in fp32 (1-D)"
contains "$T/out" "odd.weight [10, 7] fp32 0.000 MiB kept in fp32 (7 columns are not a multiple of the block size 8)"
contains "$T/out" "total: "
contains "$T/out" "3 tensors compressed, 2 kept in fp32"
contains "$T/err" 'skipped tensor "bn.num_batches_tracked" (I64, rank 0)'
[ -s "$T/m.gguf" ] || { echo "FAIL: no m.gguf"; fail=1; }
ls "$T" | grep -q 'tmp-' && { echo "FAIL: temporary file left behind"; fail=1; }

"$Q" info "$T/m.gguf" >"$T/out" 2>&1
got=$? want=0 check "info"
contains "$T/out" "5 tensors, checksums verified"
contains "$T/out" "conv.weight [16, 8, 3, 3] pq block 8, K 16, 4-bit codes, fp32 codebook"
# exact sizes: fc1.weight 64 rows x 4 blocks x 4 bits = 128 B + 16*8*4 = 512 B codebook
contains "$T/out" "fc1.weight [64, 32] pq block 8, K 16, 4-bit codes, fp32 codebook, 640 bytes"
contains "$T/out" "fc1.bias [64] fp32, 256 bytes"

"$Q" decompress "$T/m.gguf" -o "$T/d.safetensors" >"$T/out" 2>&1
got=$? want=0 check "decompress"
"$PY" "$SRC/tests/tool/read_values.py" "$T/model.safetensors" >"$T/orig.txt" || fail=1
"$PY" "$SRC/tests/tool/read_values.py" "$T/d.safetensors" >"$T/dec.txt" || fail=1
# kept tensors are bit-exact; compressed ones keep name and shape and become F32
contains "$T/dec.txt" "$(grep '^fc1.bias ' "$T/orig.txt")"
contains "$T/dec.txt" "$(grep '^odd.weight ' "$T/orig.txt")"
contains "$T/dec.txt" "conv.weight F32 16x8x3x3"
contains "$T/dec.txt" "emb.weight F32 100x16"

"$Q" stats "$T/m.gguf" --reference "$T/model.safetensors" >"$T/out" 2>&1
got=$? want=0 check "stats"
contains "$T/out" "fc1.bias"
grep -E '^odd.weight +fp32 +0.0000e\+00 +exact' "$T/out" >/dev/null || { echo "FAIL: odd.weight not exact"; cat "$T/out"; fail=1; }

# --- scalar int8: small error --------------------------------------------------------------------
"$Q" compress "$T/model.safetensors" -o "$T/s.gguf" --method scalar --bits 8 --per-channel >"$T/out" 2>&1
got=$? want=0 check "compress scalar int8 per channel"
"$Q" stats "$T/s.gguf" --reference "$T/model.safetensors" >"$T/out" 2>&1
got=$? want=0 check "stats scalar"
awk '$2 == "scalar" && $3 + 0 > 1e-3 { bad = 1 } END { exit bad }' "$T/out" || { echo "FAIL: int8 error too large"; cat "$T/out"; fail=1; }
"$Q" info "$T/s.gguf" >"$T/out" 2>&1
contains "$T/out" "scalar int8, symmetric, per channel"

# --- include/exclude, int8 codebooks, dry run ----------------------------------------------------
"$Q" compress "$T/model.safetensors" -o "$T/i.gguf" --centroids 16 --include 'weight$' --exclude '^conv' \
    --int8-codebooks >"$T/out" 2>&1
got=$? want=0 check "include/exclude + int8 codebooks"
contains "$T/out" "conv.weight [16, 8, 3, 3] fp32 0.004 MiB kept in fp32 (matched by --exclude)"
contains "$T/out" "fc1.bias [64] fp32 0.000 MiB kept in fp32 (1-D)"
"$Q" info "$T/i.gguf" >"$T/out" 2>&1
contains "$T/out" "emb.weight [100, 16] pq block 8, K 16, 4-bit codes, int8 codebook"
"$Q" compress "$T/model.safetensors" -o "$T/dry.gguf" --dry-run >"$T/out" 2>&1
got=$? want=0 check "dry run"
contains "$T/out" "nothing written"
[ -e "$T/dry.gguf" ] && { echo "FAIL: dry run wrote a file"; fail=1; }

# --- usage errors: 1 -----------------------------------------------------------------------------
for args in "" "compress" "compress $T/model.safetensors" "compress $T/model.safetensors -o x --bits 9" \
    "compress $T/model.safetensors -o x --method foo" "compress $T/model.safetensors -o x --frobnicate" \
    "compress $T/model.safetensors -o x --include (" "decompress $T/m.gguf" "stats $T/m.gguf" "nosuchcommand"; do
    # shellcheck disable=SC2086
    "$Q" $args >/dev/null 2>"$T/err"
    got=$? want=1 check "usage error: qnoise $args"
done

# --- bad input: 2, I/O: 3 ------------------------------------------------------------------------
head -c 200 "$T/m.gguf" >"$T/trunc.gguf"
"$Q" info "$T/trunc.gguf" >/dev/null 2>"$T/err"
got=$? want=2 check "truncated gguf"
contains "$T/err" "trunc.gguf"
cp "$T/m.gguf" "$T/flip.gguf"
size=$(stat -c %s "$T/flip.gguf")
printf '\x5a' | dd of="$T/flip.gguf" bs=1 seek=$((size - 3)) conv=notrunc status=none
"$Q" info "$T/flip.gguf" >/dev/null 2>"$T/err"
got=$? want=2 check "checksum mismatch"
contains "$T/err" "flip.gguf"
"$Q" decompress "$T/model.safetensors" -o "$T/x.safetensors" >/dev/null 2>&1
got=$? want=2 check "decompress of a file that is not GGUF"
[ -e "$T/x.safetensors" ] && { echo "FAIL: output written on error"; fail=1; }
"$Q" compress "$T/m.gguf" -o "$T/y.gguf" >/dev/null 2>&1
got=$? want=2 check "compress of a file that is not safetensors"
[ -e "$T/y.gguf" ] && { echo "FAIL: output written on error"; fail=1; }
"$Q" info "$T/none.gguf" >/dev/null 2>&1
got=$? want=3 check "missing file"
"$Q" compress "$T/model.safetensors" -o "$T/nodir/z.gguf" --centroids 16 >/dev/null 2>"$T/err"
got=$? want=3 check "output directory missing"
contains "$T/err" "nodir"
"$Q" stats "$T/m.gguf" --reference "$T/d.safetensors" >/dev/null 2>&1
got=$? want=0 check "stats against the decoded file"

exit $fail
