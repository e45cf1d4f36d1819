#!/bin/sh
# Cross-check: write a sample GGUF file with libqnoise, read it with the npm
# package @huggingface/gguf (an independent reader) and compare everything.
# Usage: run.sh WRITER_PROGRAM CHECK_MJS
# The package is looked up in $QN_NPM_DIR/node_modules, by default
# $HOME/.cache/qnoise-npm (where .ci/run installs it). Without node (>= 20)
# or the package the test is skipped (exit 77).
# SPDX-License-Identifier: MIT
set -u
writer=$1
script=$2
npm_dir=${QN_NPM_DIR:-${HOME:-/root}/.cache/qnoise-npm}
hint="npm install --prefix $npm_dir @huggingface/gguf@0.4.6"

if ! command -v node >/dev/null 2>&1; then
    echo "skipped: node not found, and @huggingface/gguf not installed ($hint)"
    exit 77
fi
if [ ! -f "$npm_dir/node_modules/@huggingface/gguf/package.json" ]; then
    echo "skipped: @huggingface/gguf not installed ($hint)"
    exit 77
fi
major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$major" -lt 20 ]; then
    echo "skipped: node $major is older than 20, which @huggingface/gguf needs"
    exit 77
fi

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
if ! "$writer" "$tmp/sample.gguf" "$tmp/expected.json"; then
    echo "gguf-npm: the writer failed"
    exit 1
fi
node "$script" "$npm_dir" "$tmp/sample.gguf" "$tmp/expected.json"
rc=$?
exit $rc
