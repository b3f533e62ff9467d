# server/proto/local.mk - libcorral_proto.la, the memcached text protocol
# as a pure library: parser and reply composers.  It sees no engine, no
# libev and no sockets: its CPPFLAGS replace AM_CPPFLAGS (which carries
# the engine's include path) rather than extend it, so an #include of
# corral.h here fails to build.

noinst_LTLIBRARIES += server/proto/libcorral_proto.la
server_proto_libcorral_proto_la_SOURCES = \
	server/proto/proto.h \
	server/proto/internal.h \
	server/proto/parse.c \
	server/proto/meta.c \
	server/proto/compose.c \
	server/proto/ext.c
server_proto_libcorral_proto_la_CPPFLAGS = -I$(top_srcdir)/server/proto
server_proto_libcorral_proto_la_CFLAGS = $(AM_CFLAGS)
