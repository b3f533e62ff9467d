# tests/fuzz/local.mk - fuzz targets: the protocol library (fuzz_proto),
# the engine against a reference model (fuzz_engine), and corrald's
# pre-authentication framing (fuzz_auth).
#
# With --enable-fuzz (clang): tests/fuzz/fuzz_proto, a libFuzzer binary
# (ASan + UBSan).  It links an instrumented copy of libcorral_proto built
# here from the same sources, so that coverage reaches the parser while
# the ordinary library (which corrald links) stays uninstrumented.  The
# command to run it is at the top of fuzz_proto.c.
#
# Without it: tests/fuzz/replay_proto, the same target driven by
# replay_main.c over the checked-in corpus, run by make check.

FUZZ_PROTO_CPPFLAGS = -I$(top_srcdir)/server/proto

if ENABLE_FUZZ
FUZZ_SANITIZE = -fsanitize=address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer -g

noinst_LTLIBRARIES += tests/fuzz/libcorral_proto_fuzz.la
tests_fuzz_libcorral_proto_fuzz_la_SOURCES = \
	$(server_proto_libcorral_proto_la_SOURCES)
tests_fuzz_libcorral_proto_fuzz_la_CPPFLAGS = \
	$(server_proto_libcorral_proto_la_CPPFLAGS)
tests_fuzz_libcorral_proto_fuzz_la_CFLAGS = $(AM_CFLAGS) \
	-fsanitize=fuzzer-no-link $(FUZZ_SANITIZE)

noinst_PROGRAMS += tests/fuzz/fuzz_proto
tests_fuzz_fuzz_proto_SOURCES = tests/fuzz/fuzz_proto.c
tests_fuzz_fuzz_proto_CPPFLAGS = $(FUZZ_PROTO_CPPFLAGS)
tests_fuzz_fuzz_proto_CFLAGS = $(AM_CFLAGS) -fsanitize=fuzzer \
	$(FUZZ_SANITIZE)
tests_fuzz_fuzz_proto_LDFLAGS = $(AM_LDFLAGS) -fsanitize=fuzzer \
	$(FUZZ_SANITIZE)
tests_fuzz_fuzz_proto_LDADD = tests/fuzz/libcorral_proto_fuzz.la

# The engine, instrumented, with libc malloc so that ASan sees it all.
noinst_LTLIBRARIES += tests/fuzz/libcorral_core_fuzz.la
tests_fuzz_libcorral_core_fuzz_la_SOURCES = $(ENGINE_SOURCES)
tests_fuzz_libcorral_core_fuzz_la_CPPFLAGS = $(ENGINE_CPPFLAGS) \
	-DCORRAL_MEM_LIBC=1
tests_fuzz_libcorral_core_fuzz_la_CFLAGS = $(AM_CFLAGS) $(XXHASH_CFLAGS) \
	-fsanitize=fuzzer-no-link $(FUZZ_SANITIZE)
tests_fuzz_libcorral_core_fuzz_la_LIBADD = $(XXHASH_LIBS) -lpthread -lm

noinst_PROGRAMS += tests/fuzz/fuzz_engine
tests_fuzz_fuzz_engine_SOURCES = tests/fuzz/fuzz_engine.c
tests_fuzz_fuzz_engine_CFLAGS = $(AM_CFLAGS) -fsanitize=fuzzer \
	$(FUZZ_SANITIZE)
tests_fuzz_fuzz_engine_LDFLAGS = $(AM_LDFLAGS) -fsanitize=fuzzer \
	$(FUZZ_SANITIZE)
tests_fuzz_fuzz_engine_LDADD = tests/fuzz/libcorral_core_fuzz.la

# The pre-authentication framing (-Y), compiled in, instrumented.
noinst_PROGRAMS += tests/fuzz/fuzz_auth
tests_fuzz_fuzz_auth_SOURCES = tests/fuzz/fuzz_auth.c server/auth.c
tests_fuzz_fuzz_auth_CPPFLAGS = -I$(top_srcdir)/server
tests_fuzz_fuzz_auth_CFLAGS = $(AM_CFLAGS) -fsanitize=fuzzer $(FUZZ_SANITIZE)
tests_fuzz_fuzz_auth_LDFLAGS = $(AM_LDFLAGS) -fsanitize=fuzzer \
	$(FUZZ_SANITIZE)
else
check_PROGRAMS += tests/fuzz/replay_proto
TESTS += tests/fuzz/replay_proto
tests_fuzz_replay_proto_SOURCES = tests/fuzz/fuzz_proto.c \
	tests/fuzz/replay_main.c
tests_fuzz_replay_proto_CPPFLAGS = $(FUZZ_PROTO_CPPFLAGS) \
	-DREPLAY_CORPUS='"$(abs_top_srcdir)/tests/fuzz/corpus/proto"'
tests_fuzz_replay_proto_CFLAGS = $(AM_CFLAGS)
tests_fuzz_replay_proto_LDADD = server/proto/libcorral_proto.la

check_PROGRAMS += tests/fuzz/replay_engine
TESTS += tests/fuzz/replay_engine
tests_fuzz_replay_engine_SOURCES = tests/fuzz/fuzz_engine.c \
	tests/fuzz/replay_main.c
tests_fuzz_replay_engine_CPPFLAGS = $(AM_CPPFLAGS) \
	-DREPLAY_CORPUS='"$(abs_top_srcdir)/tests/fuzz/corpus/engine"'
tests_fuzz_replay_engine_CFLAGS = $(AM_CFLAGS)
tests_fuzz_replay_engine_LDADD = engine/libcorral_core.la

check_PROGRAMS += tests/fuzz/replay_auth
TESTS += tests/fuzz/replay_auth
tests_fuzz_replay_auth_SOURCES = tests/fuzz/fuzz_auth.c \
	tests/fuzz/replay_main.c server/auth.c
tests_fuzz_replay_auth_CPPFLAGS = -I$(top_srcdir)/server \
	-DREPLAY_CORPUS='"$(abs_top_srcdir)/tests/fuzz/corpus/auth"'
tests_fuzz_replay_auth_CFLAGS = $(AM_CFLAGS)
endif

EXTRA_DIST += tests/fuzz/proto.dict tests/fuzz/corpus tests/fuzz/replay_main.c
