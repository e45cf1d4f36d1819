#!/usr/bin/env bash
# Install the Debian packages listed in scripts/packages.txt that are missing.
# Needs root (or sudo) only when something is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mapfile -t pkgs < <(grep -v '^\s*#' "$here/packages.txt" | grep -v '^\s*$')
missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
npm_reader() {
  # Optional: the npm reader @huggingface/gguf for the GGUF cross-check (tests/gguf_npm). Never
  # fails: without npm or its registry that test prints why and is skipped.
  local dir=${QN_NPM_DIR:-${HOME:-/root}/.cache/qnoise-npm}
  [ -f "$dir/node_modules/@huggingface/gguf/package.json" ] && return 0
  if command -v npm >/dev/null 2>&1 &&
     timeout 300 npm install --prefix "$dir" --no-audit --no-fund @huggingface/gguf@0.4.6 >/dev/null 2>&1; then
    echo "install-deps: @huggingface/gguf installed in $dir"
  else
    echo "install-deps: warning: @huggingface/gguf not installed in $dir (npm offline?); the gguf-npm test will be skipped" >&2
  fi
}
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
  npm_reader
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update
$sudo apt-get install -y --no-install-recommends "${missing[@]}"
# a NodeSource nodejs ships npm itself (and conflicts with Debian's npm): add Debian's only if missing
if ! command -v npm >/dev/null 2>&1; then
  $sudo apt-get install -y --no-install-recommends npm || echo "install-deps: warning: npm could not be installed" >&2
fi
npm_reader
