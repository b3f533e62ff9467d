# tests/integration/local.mk - corrald on a free loopback port, driven by
# raw sockets, real clients (pymemcache, pylibmc, memccapable) and side by
# side with a real memcached.  The scripts find the server through
# top_builddir and scale their timeouts under sanitizers
# (CORRAL_SANITIZE); see harness.py.

INTEGRATION_TESTS = \
	tests/integration/test_classic.py \
	tests/integration/test_meta.py \
	tests/integration/test_stampede.py \
	tests/integration/test_malformed.py \
	tests/integration/test_clients.py \
	tests/integration/memccapable.sh \
	tests/integration/test_differential.py \
	tests/integration/test_metrics.py \
	tests/integration/test_introspection.py \
	tests/integration/test_invalidation.py \
	tests/integration/test_peers.py \
	tests/integration/test_near.py \
	tests/integration/test_faults.py \
	tests/integration/test_security.py \
	tests/integration/test_tls.py

TESTS += $(INTEGRATION_TESTS)
EXTRA_DIST += $(INTEGRATION_TESTS) tests/integration/harness.py

# The near cache's test drives two processes of this helper.
check_PROGRAMS += tests/integration/near_helper
tests_integration_near_helper_SOURCES = tests/integration/near_helper.c
tests_integration_near_helper_CPPFLAGS = $(AM_CPPFLAGS) \
	-I$(top_srcdir)/server/near
tests_integration_near_helper_LDADD = server/near/libcorral-near.la \
	engine/libcorral.la
# An LD_PRELOAD library making the engine's allocator fail, for
# test_faults.py (built shared: -rpath makes libtool build a .so).
check_LTLIBRARIES += tests/integration/libfailalloc.la
tests_integration_libfailalloc_la_SOURCES = tests/integration/failalloc.c
tests_integration_libfailalloc_la_LDFLAGS = -module -avoid-version \
	-rpath $(abs_builddir)/tests/integration
tests_integration_libfailalloc_la_LIBADD = -ldl
