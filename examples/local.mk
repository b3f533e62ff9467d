# examples/local.mk - the README's embedding example, built against the
# in-tree library and run by make check (tests/embed_example.sh, which also
# compiles the README's copy through pkg-config against an installed copy).
noinst_PROGRAMS += examples/embed
examples_embed_SOURCES = examples/embed.c
examples_embed_LDADD = engine/libcorral.la
