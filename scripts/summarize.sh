#!/bin/sh
# Add up test results across build directories and print
# "N passed, N failed" as the last line; exit 1 if anything failed.
#
# Each test program prints "RESULT: <p> passed, <f> failed".  A test that
# the harness marked FAIL or ERROR without such a line (a crash, a
# sanitizer report) counts as one failure; a missing .log as well.
set -u
passed=0
failed=0
for dir in "$@"; do
    for log in $(find "$dir" -name '*.log' ! -name 'test-suite.log' ! -name 'config.log' 2>/dev/null); do
        trs=${log%.log}.trs
        line=$(grep -E '^RESULT: [0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
        res=""
        [ -f "$trs" ] && res=$(sed -n 's/^:test-result: //p' "$trs" | head -1)
        if [ -n "$line" ]; then
            p=$(echo "$line" | sed -E 's/^RESULT: ([0-9]+) passed, ([0-9]+) failed.*/\1/')
            f=$(echo "$line" | sed -E 's/^RESULT: ([0-9]+) passed, ([0-9]+) failed.*/\2/')
            if [ "$f" -eq 0 ] && { [ "$res" = FAIL ] || [ "$res" = ERROR ]; }; then
                f=1 # passed its own tests, then crashed or leaked
            fi
            passed=$((passed + p))
            failed=$((failed + f))
        elif [ -f "$trs" ]; then
            case $res in
                PASS|XFAIL) passed=$((passed + 1)) ;;
                SKIP) ;;
                *) failed=$((failed + 1)) ;;
            esac
        fi
    done
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
