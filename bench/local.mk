# bench/local.mk - corral-bench, the benchmark program (never installed,
# never run by make check: it prints numbers and asserts nothing).
#
# It uses libcorral through corral.h only (and the near cache through
# corral_near.h, for the stampede mode).  The bare reference table hashes
# with xxHash (header-only, XXH_INLINE_ALL); trace replay reads zstd.
# libzstd is linked directly until configure.ac checks for it (see
# bench/README.md for the lines it needs).

noinst_PROGRAMS += bench/corral-bench
bench_corral_bench_SOURCES = \
	bench/bench.h \
	bench/corral-bench.c \
	bench/engine.c \
	bench/hist.c \
	bench/hist.h \
	bench/keydist.c \
	bench/keydist.h \
	bench/memory.c \
	bench/net.c \
	bench/spawn.c \
	bench/spawn.h \
	bench/stampede.c \
	bench/trace.c \
	bench/watch.c
bench_corral_bench_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/server/near
bench_corral_bench_CFLAGS = $(AM_CFLAGS) $(XXHASH_CFLAGS) $(ZSTD_CFLAGS)
bench_corral_bench_LDADD = server/near/libcorral-near.la engine/libcorral.la \
	$(XXHASH_LIBS) $(ZSTD_LIBS) -lpthread -lm

EXTRA_DIST += bench/README.md
