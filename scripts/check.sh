#!/bin/sh
# Set up, build and run every test: the plain build, then the suite again
# under AddressSanitizer + UBSan and under ThreadSanitizer.  The last line
# sums every test run: "N passed, N failed".
#
#   scripts/check.sh            all three builds
#   CHECK_BUILDS=plain scripts/check.sh   just one (plain, asan or tsan)
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
builds=${CHECK_BUILDS:-"plain asan tsan"}
jobs=${JOBS:-2}

"$top/scripts/deps.sh" || { echo "dependency installation failed"; echo "0 passed, 1 failed"; exit 1; }
(cd "$top" && ./autogen.sh) >/dev/null 2>&1 || { echo "autogen failed"; echo "0 passed, 1 failed"; exit 1; }

status=0
for b in $builds; do
    dir="$top/build/$b"
    case $b in
        plain) flags="--enable-werror" ;;
        asan)  flags="--enable-asan --enable-debug" ;;
        tsan)  flags="--enable-tsan" ;;
        *) echo "unknown build $b"; exit 2 ;;
    esac
    echo "=== $b build: configure $flags"
    mkdir -p "$dir"
    (cd "$dir" && "$top/configure" -q $flags >configure.out 2>&1) ||
        { cat "$dir/configure.out"; echo "=== $b: configure FAILED"; status=1; continue; }
    (cd "$dir" && make -j"$jobs" >make.out 2>&1) ||
        { tail -50 "$dir/make.out"; echo "=== $b: build FAILED"; status=1;
          echo "RESULT: 0 passed, 1 failed" >"$dir/build-failed.log"; continue; }
    (cd "$dir" && make -j"$jobs" check >check.out 2>&1) || status=1
    grep -E '^(PASS|FAIL|ERROR|XPASS|SKIP):' "$dir/check.out"
    for f in $(grep -lE '^:test-result: (FAIL|ERROR)' "$dir"/tests/*/*.trs "$dir"/tests/*.trs 2>/dev/null); do
        log=${f%.trs}.log
        echo "--- $log: its failed checks, then its last 30 lines"
        grep -A4 -E '^FAIL' "$log" | head -60
        echo "---"
        tail -30 "$log"
    done
done
[ "$builds" = "plain asan tsan" ] && [ $status -eq 0 ] &&
    { (cd "$top/build/plain" && make -j"$jobs" distcheck >distcheck.out 2>&1) &&
      echo "RESULT: 1 passed, 0 failed" >"$top/build/plain/distcheck.log" ||
      { tail -40 "$top/build/plain/distcheck.out"; status=1;
        echo "RESULT: 0 passed, 1 failed" >"$top/build/plain/distcheck.log"; }; }
exec "$top/scripts/summarize.sh" $(for b in $builds; do echo "$top/build/$b"; done)
