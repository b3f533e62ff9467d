#!/bin/sh
# Run every libFuzzer target for a fixed time, one after the other.
#
#   scripts/fuzz.sh [seconds-per-target] [target ...]
#
# Defaults: 1800 seconds (30 minutes) per target; targets fuzz_proto,
# fuzz_engine and fuzz_auth.  The targets are built with clang-14 and --enable-fuzz
# (ASan + UBSan + libFuzzer) in their own build directory, build/fuzz
# under the source tree (FUZZ_BUILD overrides it), so ordinary builds are
# untouched.  Each target runs on one core (-jobs is not used) so that the
# machine stays usable.
#
# Inputs that grow coverage go to build/fuzz/corpus/<target>, seeded from
# the checked-in tests/fuzz/corpus/<target>.  A crash leaves
# build/fuzz/crash-<target>-<hash> and makes this script exit 1; once the
# bug is fixed, copy the file into tests/fuzz/corpus/<target>/ so that
# make check replays it from then on.  A log of each run is kept in
# build/fuzz/<target>.log.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-1800}
[ $# -gt 0 ] && shift
targets=${*:-"fuzz_proto fuzz_engine fuzz_auth"}
dir=${FUZZ_BUILD:-"$top/build/fuzz"}
cc=${FUZZ_CC:-clang-14}

case $secs in
    ''|*[!0-9]*) echo "usage: $0 [seconds-per-target] [target ...]" >&2
                 exit 64 ;;
esac
command -v "$cc" >/dev/null 2>&1 || {
    echo "$cc not found (Debian: apt-get install clang-14 libfuzzer-14-dev)" >&2
    exit 69
}

[ -x "$top/configure" ] || (cd "$top" && ./autogen.sh) || exit 1
mkdir -p "$dir" || exit 1
cd "$dir" || exit 1
if [ ! -f Makefile ]; then
    "$top/configure" -q CC="$cc" --enable-fuzz >configure.out 2>&1 ||
        { cat configure.out; echo "configure failed" >&2; exit 1; }
fi
for t in $targets; do
    make -j2 "tests/fuzz/$t" >make.out 2>&1 ||
        { tail -30 make.out; echo "building $t failed" >&2; exit 1; }
done

status=0
for t in $targets; do
    seed=$top/tests/fuzz/corpus/${t#fuzz_}
    work=$dir/corpus/${t#fuzz_}
    dict=
    [ "$t" = fuzz_proto ] && dict="-dict=$top/tests/fuzz/proto.dict"
    mkdir -p "$work"
    echo "=== $t: $secs s (corpus $work, seeds $seed)"
    # shellcheck disable=SC2086
    "./tests/fuzz/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$dir/crash-$t-" \
        $dict "$work" "$seed" >"$dir/$t.log" 2>&1
    rc=$?
    tail -20 "$dir/$t.log" | grep -E '^(stat::|#[0-9]+.*(DONE|INITED))' || true
    if [ $rc -ne 0 ]; then
        echo "=== $t: FAILED (exit $rc); see $dir/$t.log"
        ls "$dir"/crash-"$t"-* 2>/dev/null
        status=1
    else
        echo "=== $t: no crash in $secs s"
    fi
done
exit $status
