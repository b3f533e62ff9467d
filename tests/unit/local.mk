# tests/unit/local.mk - CUnit programs, one per engine module.  They link
# the engine's internal library, so they may call internal functions.

UNIT_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/engine -I$(top_srcdir)/tests/unit
UNIT_CFLAGS = $(AM_CFLAGS) $(CUNIT_CFLAGS) $(ENGINE_MEM_CFLAGS) $(XXHASH_CFLAGS)
UNIT_LDADD = engine/libcorral_core.la $(CUNIT_LIBS)

UNIT_TESTS = \
	tests/unit/test_table \
	tests/unit/test_api \
	tests/unit/test_expire \
	tests/unit/test_evict \
	tests/unit/test_mem \
	tests/unit/test_pin \
	tests/unit/test_stress

check_PROGRAMS += $(UNIT_TESTS)
TESTS += $(UNIT_TESTS)

tests_unit_test_table_SOURCES = tests/unit/test_table.c tests/unit/cu_main.h
tests_unit_test_table_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_table_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_table_LDADD = $(UNIT_LDADD)

tests_unit_test_api_SOURCES = tests/unit/test_api.c tests/unit/cu_main.h
tests_unit_test_api_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_api_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_api_LDADD = $(UNIT_LDADD)

tests_unit_test_expire_SOURCES = tests/unit/test_expire.c tests/unit/cu_main.h
tests_unit_test_expire_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_expire_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_expire_LDADD = $(UNIT_LDADD)

tests_unit_test_evict_SOURCES = tests/unit/test_evict.c tests/unit/cu_main.h \
	tests/unit/accounting.h
tests_unit_test_evict_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_evict_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_evict_LDADD = $(UNIT_LDADD)

tests_unit_test_mem_SOURCES = tests/unit/test_mem.c tests/unit/cu_main.h \
	tests/unit/accounting.h
tests_unit_test_mem_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_mem_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_mem_LDADD = $(UNIT_LDADD)

tests_unit_test_pin_SOURCES = tests/unit/test_pin.c tests/unit/cu_main.h
tests_unit_test_pin_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_pin_CFLAGS = $(UNIT_CFLAGS) -pthread
tests_unit_test_pin_LDADD = $(UNIT_LDADD) -lpthread

# The stress test runs threads.
tests_unit_test_stress_SOURCES = tests/unit/test_stress.c tests/unit/cu_main.h \
	tests/unit/accounting.h
tests_unit_test_stress_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_stress_CFLAGS = $(UNIT_CFLAGS) -pthread
tests_unit_test_stress_LDADD = $(UNIT_LDADD) -lpthread
