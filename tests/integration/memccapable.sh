#!/bin/sh
# memccapable.sh - libmemcached's memccapable, ASCII tests only (-a),
# against corrald on a free loopback port.  Every "[pass]" line counts as
# a pass, every other test line as a failure; corrald must then exit 0
# on SIGTERM.  Ends with "RESULT: <passed> passed, <failed> failed".
set -u
builddir=${top_builddir:-$(cd "$(dirname "$0")/../.." && pwd)}
corrald=$builddir/server/corrald
slow=1
[ "${CORRAL_SANITIZE:-none}" != none ] && slow=4

if ! command -v memccapable >/dev/null 2>&1; then
    echo "memccapable not installed (Debian: libmemcached-tools)"
    echo "RESULT: 0 passed, 1 failed"
    exit 1
fi

port=$(${PYTHON:-python3} -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
out=$(mktemp)

"$corrald" -p "$port" -l 127.0.0.1 -t 2 2>"$log" &
pid=$!
# The watchdog: killed after 120 s (scaled) whatever happens.  Its sleep
# goes when it does, and it holds none of our output open.
(
    trap 'kill "$s" 2>/dev/null; exit 0' TERM
    sleep $((120 * slow)) &
    s=$!
    wait "$s" && kill -KILL "$pid" 2>/dev/null
) >/dev/null 2>&1 &
watchdog=$!
trap 'kill "$watchdog" 2>/dev/null; kill -KILL "$pid" 2>/dev/null; rm -f "$log" "$out"' EXIT

ready=0
i=0
while [ $i -lt $((100 * slow)) ]; do
    if ${PYTHON:-python3} -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null; then
        ready=1
        break
    fi
    sleep 0.1
    i=$((i + 1))
done
if [ $ready -ne 1 ]; then
    echo "corrald did not start:"
    cat "$log"
    kill "$pid" 2>/dev/null
    echo "RESULT: 0 passed, 1 failed"
    exit 1
fi

timeout $((60 * slow)) memccapable -a -t $((5 * slow)) -h 127.0.0.1 -p "$port" >"$out" 2>&1
mrc=$?
cat "$out"
passed=$(grep -c '\[pass\]' "$out")
failed=$(grep -E '^ascii ' "$out" | grep -vc '\[pass\]')
if [ "$passed" -eq 0 ] || [ $mrc -ne 0 ]; then
    echo "FAIL: memccapable exited with $mrc"
    failed=$((failed + 1))
fi

kill -TERM "$pid"
wait "$pid"
rc=$?
if [ $rc -eq 0 ]; then
    echo "PASS: corrald exits 0 on SIGTERM"
    passed=$((passed + 1))
else
    echo "FAIL: corrald exited with $rc"
    cat "$log"
    failed=$((failed + 1))
fi
echo "RESULT: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
