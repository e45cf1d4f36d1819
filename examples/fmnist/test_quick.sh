#!/usr/bin/env bash
# Smoke test of the demo: `qnoise-fmnist --quick` runs, its uncompressed models learn (the
# program exits 1 below 50 % test accuracy, chance is 10 %), every compressed model survives
# the GGUF round trip (checked by the program), and the outputs exist and are well formed.
# Skipped (77) when the Fashion-MNIST files are not installed.
set -euo pipefail
bin=$1
data=${QN_FMNIST_DATA:-/usr/share/datasets/fashion-mnist}
if [ ! -f "$data/train-images-idx3-ubyte.gz" ]; then
  echo "SKIP: Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)"
  exit 77
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$bin" --quick --out "$out" --data "$data" > "$out/log.txt"
tail -n 40 "$out/log.txt"
test -s "$out/results.md"
grep -q '^| iPQ b8 K256 staged+ft |' "$out/results.md"
grep -q '^| int4 (per-channel) |' "$out/results.md"
python3 - "$out/results.svg" <<'PY'
import sys, xml.dom.minidom
doc = xml.dom.minidom.parse(sys.argv[1])
assert doc.documentElement.tagName == "svg"
assert len(doc.getElementsByTagName("polyline")) >= 3
PY
n=$(ls "$out"/*.gguf | wc -l)
[ "$n" -ge 10 ] || { echo "only $n GGUF files"; exit 1; }
# bad input: a missing data directory is a clear error with status 1, nothing else
if "$bin" --quick --out "$out/x" --data "$out/nowhere" 2> "$out/err.txt"; then
  echo "missing data accepted"; exit 1
fi
grep -q "dataset-fashion-mnist" "$out/err.txt"
[ ! -e "$out/x" ] || { echo "output directory created despite the error"; exit 1; }
# a corrupt file: a truncated gzip stream
mkdir -p "$out/bad"
cp "$data"/t10k-labels-idx1-ubyte.gz "$data"/train-labels-idx1-ubyte.gz "$out/bad/"
head -c 100000 "$data/train-images-idx3-ubyte.gz" > "$out/bad/train-images-idx3-ubyte.gz"
cp "$data/t10k-images-idx3-ubyte.gz" "$out/bad/"
if "$bin" --out "$out/y" --data "$out/bad" 2> "$out/err2.txt"; then
  echo "truncated data accepted"; exit 1
fi
cat "$out/err2.txt"
grep -q "train-images-idx3-ubyte.gz: corrupt or truncated" "$out/err2.txt"
# bad usage
set +e
"$bin" --bogus > /dev/null 2>&1
[ $? -eq 2 ] || { echo "bad usage did not exit 2"; exit 1; }
echo "fmnist --quick: ok"
