#!/bin/sh
# The Python package's tests (tests/python/test_bindings.py, which runs
# test_near.py too), run against the extension that make check built into
# the build directory (bindings/local.mk); the near cache's tests start
# $top_builddir/server/corrald.  Skipped under sanitizers: the interpreter is not
# instrumented, and the engine's own tests already run sanitized.
set -u
case ${CORRAL_SANITIZE:-none} in
    none | "") ;;
    *)
        echo "skip: Python bindings not tested under $CORRAL_SANITIZE" \
             "(the interpreter is not instrumented)"
        echo "RESULT: 0 passed, 0 failed"
        exit 77
        ;;
esac
lib=$top_builddir/bindings/python/build/lib
if [ ! -f "$lib/corral/__init__.py" ]; then
    echo "the package was not built into $lib"
    echo "RESULT: 0 passed, 1 failed"
    exit 1
fi
PYTHONPATH=$lib${PYTHONPATH:+:$PYTHONPATH}
PYTHONDONTWRITEBYTECODE=1
export PYTHONPATH PYTHONDONTWRITEBYTECODE
exec "${PYTHON:-/usr/bin/python3}" "$top_srcdir/tests/python/test_bindings.py"
