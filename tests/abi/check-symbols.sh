#!/bin/sh
# The dynamic symbols libqnoise exports must be exactly the version script's
# global names, all prefixed qn_, all bound to a QNOISE_ node.
# usage: check-symbols.sh LIBRARY MAPFILE
set -eu
lib=$1
map=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# names listed under global: in any node of the map
sed -e 's,/\*.*\*/,,g' "$map" | awk '
  /global:/ {g=1; next}
  /local:/ {g=0; next}
  /}/ {g=0; next}
  g { gsub(/[ \t;]/, ""); if ($0 != "") print }' | sort -u > "$tmp/map"
nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' > "$tmp/raw"
sed -e 's/@.*//' "$tmp/raw" | sort -u > "$tmp/lib"
status=0
if ! diff -u "$tmp/map" "$tmp/lib"; then
  echo "exported symbols differ from $map (- only in map, + only in library)" >&2
  status=1
fi
if grep -v '^qn_' "$tmp/lib" >/dev/null; then
  echo "symbols without the qn_ prefix are exported:" >&2
  grep -v '^qn_' "$tmp/lib" >&2
  status=1
fi
# every exported function must carry a QNOISE_ version node
if grep -v '@@\?QNOISE_' "$tmp/raw" | grep '^qn_' >/dev/null; then
  echo "unversioned exports:" >&2
  grep -v '@@\?QNOISE_' "$tmp/raw" >&2
  status=1
fi
n=$(wc -l < "$tmp/lib")
echo "$n exported symbols, all in $map"
exit $status
