# server/local.mk - corrald, the memcached-compatible server.
#
# Server code sees the engine only through its public header
# (-I engine/include, in AM_CPPFLAGS) and the protocol library through
# server/proto/proto.h; exec.c is the one file that includes both.

bin_PROGRAMS += server/corrald
server_corrald_SOURCES = \
	server/auth.c \
	server/auth.h \
	server/conn.c \
	server/conn.h \
	server/exec.c \
	server/exec.h \
	server/histogram.c \
	server/histogram.h \
	server/hotkeys.c \
	server/hotkeys.h \
	server/keyhash.h \
	server/leases.c \
	server/leases.h \
	server/fault.c \
	server/fault.h \
	server/listener.c \
	server/listener.h \
	server/log.c \
	server/log.h \
	server/logstream.c \
	server/logstream.h \
	server/main.c \
	server/metrics.c \
	server/metrics.h \
	server/peer.c \
	server/peer.h \
	server/server.c \
	server/server.h \
	server/settings.c \
	server/settings.h \
	server/watch.c \
	server/watch.h \
	server/tls.c \
	server/tls.h \
	server/worker.c \
	server/worker.h
server_corrald_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/server/proto
# TLS: OpenSSL when configure found it (SSL_* empty otherwise; tls.c
# then compiles to stubs and -Z is refused).
server_corrald_CFLAGS = $(AM_CFLAGS) $(SSL_CFLAGS)
server_corrald_LDADD = engine/libcorral_core.la \
	server/proto/libcorral_proto.la \
	$(EV_LIBS) $(SSL_LIBS) -lpthread

dist_man_MANS += server/corrald.8
