# server/near/local.mk - libcorral-near, the near cache: a small library
# beside the server (not in the engine) that keeps a process's own
# corral_t coherent with a corrald.  It uses the engine through corral.h
# and the protocol library for the stream's lines, so the installed
# library carries a private copy of libcorral_proto; only corral_near_*
# is exported.

lib_LTLIBRARIES += server/near/libcorral-near.la
server_near_libcorral_near_la_SOURCES = \
	server/near/corral_near.h \
	server/near/fleet.c \
	server/near/near.c \
	server/near/near_internal.h
server_near_libcorral_near_la_CPPFLAGS = $(AM_CPPFLAGS) \
	-I$(top_srcdir)/server/proto -DCORRAL_NEAR_BUILDING
server_near_libcorral_near_la_CFLAGS = $(AM_CFLAGS) -fvisibility=hidden
server_near_libcorral_near_la_LIBADD = engine/libcorral.la \
	server/proto/libcorral_proto.la -lpthread
server_near_libcorral_near_la_LDFLAGS = \
	-version-info $(CORRAL_LT_CURRENT):$(CORRAL_LT_REVISION):$(CORRAL_LT_AGE) \
	-export-symbols-regex '^corral_near_'

include_HEADERS += server/near/corral_near.h

# The README's near cache example, built against the in-tree libraries and
# run by tests/integration/test_near.py.
noinst_PROGRAMS += server/near/near-example
server_near_near_example_SOURCES = server/near/example.c
server_near_near_example_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/server/near
server_near_near_example_LDADD = server/near/libcorral-near.la \
	engine/libcorral.la
