#!/usr/bin/env bash
# The main job: installs what is missing (compilers, OpenBLAS, zlib, Debian's
# dataset-fashion-mnist, ...), builds the library and the demo in release mode,
# and runs the end-to-end demo qnoise-fmnist: trains an MLP on Fashion-MNIST
# without noise and with Quant-Noise (proxy, exact PQ, scalar), compresses every
# model (int8, int4, iPQ from 1 down to 0.125 bits per weight, one-shot and
# staged with centroid fine-tuning, int8 codebooks), writes each compressed
# model as GGUF, reloads it, evaluates it on the 10,000 test images through the
# packed kernels and prints the table. Output in fmnist-out/ (results.md,
# results.svg, the .gguf models). Arguments go to qnoise-fmnist (--quick,
# --full, --out DIR, ...; --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
build=${QN_DEMO_DIR:-build-demo}
if [ -f "$build/build.ninja" ]; then
  meson setup --reconfigure "$build" -Dbuildtype=release -Dtests=disabled -Ddemo=enabled >/dev/null
else
  meson setup "$build" -Dbuildtype=release -Dtests=disabled -Ddemo=enabled >/dev/null
fi
if ! meson compile -C "$build" > "$build/compile.log" 2>&1; then
  cat "$build/compile.log"
  echo "demo: the build failed (log above)" >&2
  exit 1
fi
echo "built libqnoise into $build/lib, the qnoise tool and the demo $build/examples/qnoise-fmnist"
"$build/tools/qnoise" info | head -n 3 || true
# OpenBLAS picks slow generic kernels on VMs that hide the CPU model; ask for the right ones
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx512f /proc/cpuinfo; then
  export OPENBLAS_CORETYPE=SkylakeX
elif [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx2 /proc/cpuinfo; then
  export OPENBLAS_CORETYPE=Haswell
fi
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
exec "$build/examples/qnoise-fmnist" --out "${QN_DEMO_OUT:-fmnist-out}" "$@"
