# tests/unit/proto.mk - the protocol library's unit tests.  They link
# libcorral_proto.la and CUnit only: no engine, no libev.

PROTO_TEST_CPPFLAGS = -I$(top_srcdir)/server/proto -I$(top_srcdir)/tests/unit
PROTO_TEST_CFLAGS = $(AM_CFLAGS) $(CUNIT_CFLAGS)
PROTO_TEST_LDADD = server/proto/libcorral_proto.la $(CUNIT_LIBS)

PROTO_UNIT_TESTS = \
	tests/unit/test_proto \
	tests/unit/test_meta \
	tests/unit/test_compose \
	tests/unit/test_ext

check_PROGRAMS += $(PROTO_UNIT_TESTS)
TESTS += $(PROTO_UNIT_TESTS)

PROTO_TEST_HDRS = tests/unit/cu_main.h tests/unit/test_proto_harness.h

tests_unit_test_proto_SOURCES = tests/unit/test_proto.c $(PROTO_TEST_HDRS)
tests_unit_test_proto_CPPFLAGS = $(PROTO_TEST_CPPFLAGS)
tests_unit_test_proto_CFLAGS = $(PROTO_TEST_CFLAGS)
tests_unit_test_proto_LDADD = $(PROTO_TEST_LDADD)

tests_unit_test_meta_SOURCES = tests/unit/test_meta.c $(PROTO_TEST_HDRS)
tests_unit_test_meta_CPPFLAGS = $(PROTO_TEST_CPPFLAGS)
tests_unit_test_meta_CFLAGS = $(PROTO_TEST_CFLAGS)
tests_unit_test_meta_LDADD = $(PROTO_TEST_LDADD)

tests_unit_test_compose_SOURCES = tests/unit/test_compose.c \
	$(PROTO_TEST_HDRS)
tests_unit_test_compose_CPPFLAGS = $(PROTO_TEST_CPPFLAGS)
tests_unit_test_compose_CFLAGS = $(PROTO_TEST_CFLAGS)
tests_unit_test_compose_LDADD = $(PROTO_TEST_LDADD)

tests_unit_test_ext_SOURCES = tests/unit/test_ext.c $(PROTO_TEST_HDRS)
tests_unit_test_ext_CPPFLAGS = $(PROTO_TEST_CPPFLAGS)
tests_unit_test_ext_CFLAGS = $(PROTO_TEST_CFLAGS)
tests_unit_test_ext_LDADD = $(PROTO_TEST_LDADD)
