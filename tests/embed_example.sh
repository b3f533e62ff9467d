#!/bin/sh
# The README's embedding example: (1) the README's code block is the same
# as examples/embed.c; (2) the in-tree build runs and prints what it should;
# (3) the code compiles and runs against an installed libcorral found with
# `pkg-config --cflags --libs corral`.
set -u
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok: $1"; }
no() { fail=$((fail + 1)); echo "FAILED: $1"; }
done_() { echo "RESULT: $pass passed, $fail failed"; [ $fail -eq 0 ]; exit $?; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# (1) README block between the embed.c markers
sed -n '/<!-- begin examples\/embed.c -->/,/<!-- end examples\/embed.c -->/p' \
    "$top_srcdir/README.md" | sed '1,2d;$d' | sed '$d' >"$tmp/readme.c"
if cmp -s "$tmp/readme.c" "$top_srcdir/examples/embed.c"; then
    ok "README example matches examples/embed.c"
else
    no "README example differs from examples/embed.c"
    diff "$tmp/readme.c" "$top_srcdir/examples/embed.c" | head -20
fi

# (2) in-tree program
out=$("$top_builddir/examples/embed" 2>&1)
echo "$out"
case $out in
    *"greeting = hello (ttl 300 s)"*"visits = 42"*"missing: not found"*)
        ok "in-tree example output" ;;
    *) no "in-tree example output" ;;
esac

# (3) install library, header and corral.pc into a scratch prefix, then
# build with pkg-config as a user would.
if [ "${CORRAL_SANITIZE:-none}" != none ]; then
    echo "skip pkg-config build under sanitizers"
    done_
fi
mkdir -p "$tmp/p/lib/pkgconfig" "$tmp/p/include"
"$top_builddir/libtool" --quiet --mode=install install -c \
    "$top_builddir/engine/libcorral.la" "$tmp/p/lib" >/dev/null 2>&1 ||
    no "libtool install"
cp "$top_srcdir/engine/include/corral.h" "$tmp/p/include/"
sed "s|^prefix=.*|prefix=$tmp/p|; s|^exec_prefix=.*|exec_prefix=$tmp/p|; \
     s|^libdir=.*|libdir=$tmp/p/lib|; s|^includedir=.*|includedir=$tmp/p/include|" \
    "$top_builddir/engine/corral.pc" >"$tmp/p/lib/pkgconfig/corral.pc"
export PKG_CONFIG_PATH="$tmp/p/lib/pkgconfig"
# shellcheck disable=SC2046
if ${CC:-cc} -o "$tmp/embed" "$tmp/readme.c" $(pkg-config --cflags --libs corral); then
    ok "compiles with pkg-config --cflags --libs corral"
    if LD_LIBRARY_PATH="$tmp/p/lib" "$tmp/embed" | grep -q "visits = 42"; then
        ok "pkg-config build runs"
    else
        no "pkg-config build runs"
    fi
else
    no "compiles with pkg-config --cflags --libs corral"
fi
done_
