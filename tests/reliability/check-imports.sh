#!/bin/sh
# The library never aborts, exits or prints, and changes no process-wide state: its shared
# object must import none of the symbols below (docs/reliability.md section 4). assert() is
# allowed for internal invariants. usage: check-imports.sh LIBQNOISE_SO
# SPDX-License-Identifier: MIT
set -u
lib=$1
command -v nm >/dev/null || { echo "skipped: nm not found"; exit 77; }
forbidden='abort exit _exit _Exit quick_exit printf fprintf vprintf vfprintf dprintf puts fputs putchar
fputc putc perror fwrite stdout stderr setlocale signal sigaction raise setenv putenv unsetenv umask
chdir fchdir setrlimit'
imports=$(nm -D --undefined-only "$lib" | awk '{print $2}' | sed 's/@.*//')
bad=0
for s in $forbidden; do
    if printf '%s\n' "$imports" | grep -qx "$s"; then
        echo "FAIL: $lib imports $s"
        bad=1
    fi
done
[ $bad -eq 0 ] && echo "ok: $(printf '%s\n' "$imports" | wc -l) imports, none of the forbidden ones"
exit $bad
