# engine/local.mk - libcorral.
#
# libcorral_core.la holds every engine object, built with hidden visibility
# so that only CORRAL_API functions are public.  It is linked whole into the
# installed libcorral (shared + static, exporting only corral_*) and into
# the unit tests, which may call internal functions.

ENGINE_SOURCES = \
	engine/cache.h \
	engine/common.h \
	engine/corral.c \
	engine/events.c \
	engine/events.h \
	engine/evict.c \
	engine/evict.h \
	engine/expire.c \
	engine/expire.h \
	engine/fetch.c \
	engine/fetch.h \
	engine/hash.h \
	engine/item.c \
	engine/item.h \
	engine/lock.c \
	engine/lock.h \
	engine/mem.c \
	engine/mem.h \
	engine/pin.c \
	engine/pin.h \
	engine/shard.c \
	engine/stats.c \
	engine/stats.h \
	engine/status.c \
	engine/table.c \
	engine/table.h \
	engine/tag.c \
	engine/tag.h \
	engine/writer.c

# Sanitizer builds allocate with libc (see engine/mem.h): jemalloc would
# replace malloc underneath the sanitizer's own.
if SANITIZED
ENGINE_MEM_CFLAGS =
ENGINE_MEM_LIBS =
else
ENGINE_MEM_CFLAGS = $(JEMALLOC_CFLAGS)
ENGINE_MEM_LIBS = $(JEMALLOC_LIBS)
endif

ENGINE_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/engine -DCORRAL_BUILDING
ENGINE_CFLAGS = $(AM_CFLAGS) -fvisibility=hidden $(ENGINE_MEM_CFLAGS) \
	$(XXHASH_CFLAGS)
ENGINE_LIBS = $(ENGINE_MEM_LIBS) $(XXHASH_LIBS) -lpthread -lm

noinst_LTLIBRARIES += engine/libcorral_core.la
engine_libcorral_core_la_SOURCES = $(ENGINE_SOURCES)
engine_libcorral_core_la_CPPFLAGS = $(ENGINE_CPPFLAGS)
engine_libcorral_core_la_CFLAGS = $(ENGINE_CFLAGS)
engine_libcorral_core_la_LIBADD = $(ENGINE_LIBS)

lib_LTLIBRARIES += engine/libcorral.la
engine_libcorral_la_SOURCES =
nodist_EXTRA_engine_libcorral_la_SOURCES = force-c-link.c
engine_libcorral_la_LIBADD = engine/libcorral_core.la
engine_libcorral_la_LDFLAGS = \
	-version-info $(CORRAL_LT_CURRENT):$(CORRAL_LT_REVISION):$(CORRAL_LT_AGE) \
	-export-symbols-regex '^corral_'

include_HEADERS += engine/include/corral.h
pkgconfig_DATA += engine/corral.pc
EXTRA_DIST += engine/corral.pc.in
