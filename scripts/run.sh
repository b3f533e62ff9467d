#!/bin/sh
# Install what is missing, build, and run corrald on 127.0.0.1:11211.
set -e
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/deps.sh"
cd "$top"
[ -x configure ] || ./autogen.sh
mkdir -p build/run && cd build/run
[ -f Makefile ] || "$top/configure" -q
make -j2
exec ./server/corrald -p 11211 -l 127.0.0.1
