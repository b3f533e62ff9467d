# tests/unit/patterns.mk - tags, prefix rules, events, fetch and
# writers: the engine's access patterns.

INVALIDATION_TESTS = \
	tests/unit/test_tags \
	tests/unit/test_events \
	tests/unit/test_fetch \
	tests/unit/test_writer

check_PROGRAMS += $(INVALIDATION_TESTS)
TESTS += $(INVALIDATION_TESTS)

tests_unit_test_tags_SOURCES = tests/unit/test_tags.c tests/unit/cu_main.h
tests_unit_test_tags_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_tags_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_tags_LDADD = $(UNIT_LDADD)

tests_unit_test_events_SOURCES = tests/unit/test_events.c tests/unit/cu_main.h
tests_unit_test_events_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_events_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_events_LDADD = $(UNIT_LDADD)

tests_unit_test_fetch_SOURCES = tests/unit/test_fetch.c tests/unit/cu_main.h
tests_unit_test_fetch_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_fetch_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_fetch_LDADD = $(UNIT_LDADD)

tests_unit_test_writer_SOURCES = tests/unit/test_writer.c tests/unit/cu_main.h
tests_unit_test_writer_CPPFLAGS = $(UNIT_CPPFLAGS)
tests_unit_test_writer_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_writer_LDADD = $(UNIT_LDADD)
