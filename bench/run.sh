#!/usr/bin/env bash
# Run the benchmarks side by side with OpenBLAS, from a build directory.
# usage: bench/run.sh [BUILD_DIR] [--quick]
#
# OpenBLAS 0.3.21 (Debian 12) picks its kernels from the CPU model name; on
# virtual machines that report a generic "Intel Xeon Processor" it falls back
# to its slow "Prescott" (SSE3) kernels, which would flatter every ratio
# against it. When that happens on an AVX-512 machine this script asks for the
# SkylakeX kernels (OPENBLAS_CORETYPE, read by OpenBLAS at load time) so that
# the anchor is the fast OpenBLAS. The benchmark prints the core in use.
set -euo pipefail
build=${1:-build}
shift || true
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx512f /proc/cpuinfo; then
  export OPENBLAS_CORETYPE=SkylakeX
fi
# idle OpenMP threads of the library must not spin while OpenBLAS's threads work
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
"$build/bench/bench_layer" "$@"
