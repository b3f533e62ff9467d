#!/bin/sh
# installcheck.sh - check what "make install" put in place (run by
# "make installcheck", which "make distcheck" runs after installing into
# its scratch prefix; scripts/check-install.sh runs it on a DESTDIR).
#
# usage: installcheck.sh DESTDIR BINDIR LIBDIR INCLUDEDIR PKGCONFIGDIR
#                        MANDIR SYSCONFDIR SYSTEMDUNITDIR VERSION
# (SYSTEMDUNITDIR empty: configured without a unit).  Prints one line per
# check and "RESULT: N passed, N failed"; exits nonzero on a failure.
set -u
dest=$1 bindir=$2 libdir=$3 includedir=$4 pkgconfigdir=$5 mandir=$6
sysconfdir=$7 unitdir=$8 version=$9
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok: $1"; }
no() { fail=$((fail + 1)); echo "FAILED: $1"; }

corrald=$dest$bindir/corrald
if [ -x "$corrald" ]; then
    ok "corrald installed in $bindir"
    out=$("$corrald" --version 2>&1 | head -n 1)
    case $out in
        "corrald $version (libcorral "*")") ok "corrald --version: $out" ;;
        *) no "corrald --version says \"$out\", expected version $version" ;;
    esac
else
    no "no executable $corrald"
fi

lib=
for f in "$dest$libdir"/libcorral.so.* "$dest$libdir"/libcorral.a; do
    [ -f "$f" ] && lib=$f
done
if [ -n "$lib" ]; then
    ok "libcorral installed in $libdir"
else
    no "no libcorral in $dest$libdir"
fi
if [ -f "$dest$includedir/corral.h" ]; then
    ok "corral.h installed"
else
    no "no $dest$includedir/corral.h"
fi
pc=$dest$pkgconfigdir/corral.pc
if [ -f "$pc" ] && grep -qx "Version: $version" "$pc"; then
    ok "corral.pc installed, version $version"
else
    no "no $pc with Version: $version"
fi
if [ -f "$dest$mandir/man8/corrald.8" ]; then
    ok "corrald.8 installed"
else
    no "no $dest$mandir/man8/corrald.8"
fi

defaults=$dest$sysconfdir/default/corrald
if [ -f "$defaults" ]; then
    ok "settings file installed as $sysconfdir/default/corrald"
    # Every variable corrald --help lists is documented there.
    missing=
    if [ -x "$corrald" ]; then
        for v in $("$corrald" --help | grep -o 'CORRAL_[A-Z_]*' | sort -u); do
            grep -q "^#*$v=" "$defaults" || missing="$missing $v"
        done
        if [ -z "$missing" ]; then
            ok "every CORRAL_* variable of corrald --help is in the file"
        else
            no "undocumented in $defaults:$missing"
        fi
    fi
    # Nothing set: the file only documents.
    if grep -q '^[^#]' "$defaults"; then
        no "$defaults sets something by default"
    else
        ok "the settings file changes no default"
    fi
else
    no "no $defaults"
fi

if [ -n "$unitdir" ]; then
    unit=$dest$unitdir/corrald.service
    if [ -f "$unit" ]; then
        ok "corrald.service installed in $unitdir"
        grep -qx "ExecStart=$bindir/corrald \$CORRAL_OPTIONS" "$unit" &&
            ok "ExecStart names $bindir/corrald" ||
            no "ExecStart does not name $bindir/corrald"
        grep -qx "EnvironmentFile=-$sysconfdir/default/corrald" "$unit" &&
            ok "EnvironmentFile names $sysconfdir/default/corrald" ||
            no "EnvironmentFile does not name $sysconfdir/default/corrald"
        if grep -q '@[a-z]*@' "$unit"; then
            no "unsubstituted @...@ in the unit"
        else
            ok "every @...@ substituted"
        fi
        # systemd's own checker, when there is one and the paths the unit
        # names are real (no DESTDIR).
        if [ -z "$dest" ] && command -v systemd-analyze >/dev/null 2>&1; then
            if err=$(systemd-analyze verify --man=no "$unit" 2>&1); then
                ok "systemd-analyze verify"
            else
                no "systemd-analyze verify: $err"
            fi
        fi
    else
        no "no $unit"
    fi
else
    echo "skip: configured --without-systemdsystemunitdir"
fi

echo "RESULT: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
