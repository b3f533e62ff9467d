#!/bin/sh
# Install, with apt-get, every Debian package Corral needs to build, test
# and benchmark.  Idempotent: packages already present are skipped.
set -e
PKGS="build-essential autoconf automake libtool pkg-config
      libjemalloc-dev libev-dev libxxhash-dev libcunit1-dev libzstd-dev zstd
      memcached libmemcached-tools libmemcached-dev nutcracker
      python3 python3-dev python3-setuptools python3-pymemcache python3-pylibmc
      clang-14 libclang-rt-14-dev libfuzzer-14-dev valgrind procps
      libssl-dev openssl"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
        missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq $missing
