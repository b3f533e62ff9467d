"""Build the corral package: the C extension with the engine compiled in.

The engine's sources are taken from the repository (../../engine relative
to this file, or CORRAL_ENGINE_DIR), and so are the near cache's
(../../server/near, and ../../server/proto, the pure protocol library
that parses its invalidation stream; CORRAL_SERVER_DIR replaces
../../server).  All are compiled into the extension, the engine with
its libc allocator (CORRAL_MEM_LIBC): a Python process cannot
dlopen Debian's libjemalloc ("cannot allocate memory in static TLS block"),
so the extension links neither libcorral.so nor jemalloc.  xxHash is used
header-only (libxxhash-dev).

    /usr/bin/python3 -m pip install --no-build-isolation ./bindings/python

CORRAL_PY_CFLAGS adds compiler flags (make check passes -Werror when
configure was given --enable-werror).
"""

import glob
import os
import shlex

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
os.chdir(HERE)  # setuptools resolves the package directory from here

ENGINE = os.path.abspath(os.environ.get("CORRAL_ENGINE_DIR")
                         or os.path.join(HERE, "..", "..", "engine"))
if not os.path.isfile(os.path.join(ENGINE, "include", "corral.h")):
    raise SystemExit("corral: engine sources not found at %s (build from a "
                     "Corral checkout, or set CORRAL_ENGINE_DIR)" % ENGINE)
SERVER = os.path.abspath(os.environ.get("CORRAL_SERVER_DIR")
                         or os.path.join(HERE, "..", "..", "server"))
NEAR = os.path.join(SERVER, "near")
PROTO = os.path.join(SERVER, "proto")
if not os.path.isfile(os.path.join(NEAR, "corral_near.h")):
    raise SystemExit("corral: near cache sources not found at %s (build "
                     "from a Corral checkout, or set CORRAL_SERVER_DIR)"
                     % NEAR)

WARNINGS = ["-Wall", "-Wextra", "-Wshadow", "-Wpointer-arith",
            "-Wstrict-prototypes", "-Wmissing-prototypes", "-Wwrite-strings",
            "-Wformat=2", "-Wundef", "-Wvla", "-Wno-unused-parameter"]

extension = Extension(
    "corral._corral",
    # the near cache (near.c, fleet.c) and the pure protocol library whose
    # stream parser it uses: sockets and pthreads, nothing else
    sources=[os.path.join(HERE, "src", "_corral.c")]
    + sorted(glob.glob(os.path.join(ENGINE, "*.c")))
    + [os.path.join(NEAR, "near.c"), os.path.join(NEAR, "fleet.c")]
    + sorted(glob.glob(os.path.join(PROTO, "*.c"))),
    depends=sorted(glob.glob(os.path.join(ENGINE, "*.h")))
    + [os.path.join(ENGINE, "include", "corral.h"),
       os.path.join(NEAR, "corral_near.h"),
       os.path.join(NEAR, "near_internal.h")]
    + sorted(glob.glob(os.path.join(PROTO, "*.h"))),
    # corral_near_* stay hidden too: CORRAL_NEAR_BUILDING is not defined
    include_dirs=[os.path.join(ENGINE, "include"), ENGINE, NEAR, PROTO],
    define_macros=[("CORRAL_MEM_LIBC", "1"), ("_GNU_SOURCE", None)],
    extra_compile_args=["-std=c11", "-fvisibility=hidden"] + WARNINGS
    + shlex.split(os.environ.get("CORRAL_PY_CFLAGS", "")),
    libraries=["pthread", "m"],
)

setup(
    packages=["corral"],
    package_data={"corral": ["py.typed", "*.pyi"]},
    ext_modules=[extension],
    include_package_data=False,  # no egg-info written into the source tree
    zip_safe=False,
)
