# tests/unit/invalidation.mk - tags, prefix rules and events.

INVALIDATION_TESTS = \
	tests/unit/test_tags \
	tests/unit/test_events

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
