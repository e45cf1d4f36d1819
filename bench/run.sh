#!/usr/bin/env bash
# Run the benchmarks side by side with OpenBLAS, from a build directory.
# usage: [QN_BENCH=layer|pq|packed_pq|packed_int] bench/run.sh [BUILD_DIR] [--quick]
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
# QN_BENCH=layer, pq, packed_pq or packed_int runs one program; all of them by default
case "${QN_BENCH:-all}" in
  layer) "$build/bench/bench_layer" "$@" ;;
  pq) "$build/bench/bench_pq" "$@" ;;
  packed_pq) "$build/bench/bench_packed_pq" "$@" ;;
  packed_int) "$build/bench/bench_packed_int" "$@" ;;
  *) "$build/bench/bench_layer" "$@"; "$build/bench/bench_pq" "$@"
     "$build/bench/bench_packed_pq" "$@"; "$build/bench/bench_packed_int" "$@" ;;
esac
