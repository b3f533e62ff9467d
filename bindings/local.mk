# bindings/local.mk - the Python package in bindings/python.
#
# make check builds it with the interpreter configure chose ($(PYTHON),
# /usr/bin/python3 on Debian) through its own setup.py, into the build
# directory only (the source tree may be read-only, as under distcheck),
# then tests/python/bindings.sh runs tests/python/test_bindings.py with
# PYTHONPATH pointing there.  The extension compiles the engine's sources
# in with the libc allocator (see bindings/python/README.md), and the near
# cache's with the protocol library it uses, so it is rebuilt whenever one
# of those files changes.  The near cache tests start server/corrald.
# Sanitizer builds skip it: the interpreter is not instrumented.

PYBIND_FILES = \
	bindings/python/README.md \
	bindings/python/bench.py \
	bindings/python/corral/__init__.py \
	bindings/python/corral/__init__.pyi \
	bindings/python/corral/py.typed \
	bindings/python/pyproject.toml \
	bindings/python/setup.py \
	bindings/python/src/_corral.c

PYBIND_DIR = bindings/python/build
PYBIND_STAMP = $(PYBIND_DIR)/stamp

# -Werror follows configure's --enable-werror.
$(PYBIND_STAMP): $(PYBIND_FILES) $(ENGINE_SOURCES) engine/include/corral.h \
		$(server_near_libcorral_near_la_SOURCES) \
		$(server_proto_libcorral_proto_la_SOURCES)
	@rm -f $@; $(MKDIR_P) $(PYBIND_DIR)
	$(AM_V_GEN)werror=; \
	case " $(CORRAL_CFLAGS) " in *" -Werror "*) werror=-Werror ;; esac; \
	out=$(abs_builddir)/$(PYBIND_DIR); \
	(cd $(srcdir)/bindings/python && \
	 CC="$(CC)" CORRAL_PY_CFLAGS="$$werror" \
	 $(PYTHON) setup.py build --build-base "$$out" \
	     --build-lib "$$out/lib" >"$$out/build.out" 2>&1) || \
	{ cat "$$out/build.out"; exit 1; }
	@touch $@

if !SANITIZED
check_DATA = $(PYBIND_STAMP)
endif

clean-local: clean-pybind
clean-pybind:
	-rm -rf $(PYBIND_DIR)
.PHONY: clean-pybind

TESTS += tests/python/bindings.sh
EXTRA_DIST += $(PYBIND_FILES) bindings/python/.gitignore \
	tests/python/bindings.sh tests/python/test_bindings.py \
	tests/python/test_near.py
