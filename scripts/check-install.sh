#!/bin/sh
# check-install.sh - install a built tree into a scratch DESTDIR, check it
# with "make installcheck" (packaging/installcheck.sh), uninstall, and
# check that nothing is left behind.
#
#   scripts/check-install.sh [BUILDDIR]     (default: build/plain)
#
# Prints the checks and "RESULT: N passed, N failed"; exits nonzero on a
# failure.  "make distcheck" runs the same installcheck in its scratch
# prefix.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/build/plain}
dest=$(mktemp -d)
trap 'rm -rf "$dest" "$dest.install.log"' EXIT
jobs=${JOBS:-2}

log=$dest.install.log
if ! make -C "$build" -j"$jobs" install DESTDIR="$dest" >"$log" 2>&1; then
    tail -30 "$log"
    echo "RESULT: 0 passed, 1 failed"
    exit 1
fi
rm -f "$log"
make -s -C "$build" installcheck DESTDIR="$dest" 2>&1 |
    grep -E '^(ok|FAILED|skip):' | tee "$dest/.checks"
pass=$(grep -c '^ok:' "$dest/.checks")
fail=$(grep -c '^FAILED:' "$dest/.checks")
rm -f "$dest/.checks"
make -s -C "$build" uninstall DESTDIR="$dest" >/dev/null 2>&1
left=$(find "$dest" -type f | head -5)
if [ -z "$left" ]; then
    pass=$((pass + 1)); echo "ok: uninstall leaves no file"
else
    fail=$((fail + 1)); echo "FAILED: left after uninstall: $left"
fi
echo "RESULT: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
