#!/usr/bin/env bash
# The main job. Until the Fashion-MNIST demo lands (issue: end-to-end demo), it
# installs what is missing, builds the library and the `qnoise` tool, and runs
# the tool to show the version and the kernels chosen on this CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
build=${QN_DEMO_DIR:-build-demo}
if [ -f "$build/build.ninja" ]; then
  meson setup --reconfigure "$build" -Dbuildtype=release -Dtests=disabled >/dev/null
else
  meson setup "$build" -Dbuildtype=release -Dtests=disabled >/dev/null
fi
meson compile -C "$build" >/dev/null
echo "built libqnoise into $build/lib (libqnoise.so.1) and the tool $build/tools/qnoise"
echo "\$ qnoise --version"
"$build/tools/qnoise" --version
echo "\$ qnoise info"
"$build/tools/qnoise" info
echo "\$ QN_ISA=scalar qnoise info"
QN_ISA=scalar "$build/tools/qnoise" info
echo "demo: the library loads, reports its version and dispatches its kernels; the Fashion-MNIST"
echo "      Quant-Noise demo replaces this once the training and compression issues land."
