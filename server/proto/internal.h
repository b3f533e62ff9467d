/*
 * internal.h - what parse.c, meta.c and compose.c share and nothing else
 * sees: the tokenised command line, memcached's number conversions, the
 * data-block step of storage commands, and the entry points of meta.c
 * and ext.c.
 */
#ifndef CORRAL_PROTO_INTERNAL_H
#define CORRAL_PROTO_INTERNAL_H

#include "proto.h"

/* One word of a command line: bytes [p, p + len), never empty. */
struct proto_tok {
    const char *p;
    size_t len;
};

/*
 * A command line split the way memcached splits it: on ' ' only, into at
 * most PROTO_TOKENS_MAX - 1 words.  ntok is memcached's "ntokens", which
 * counts a terminator too: a line of n words has ntok = min(n, 23) + 1,
 * so a line of 23 or more words has ntok = 24 and checks on ntok treat
 * them alike, as memcached does.
 */
struct proto_line {
    const char *text;  /* line start (the buffer start) */
    size_t len;        /* text length: without "\r\n", cut at a NUL */
    size_t size;       /* bytes up to and including the '\n' */
    size_t ntok;
    struct proto_tok tok[PROTO_TOKENS_MAX];
};

/*
 * memcached's safe_strtol / safe_strtoul / safe_strtoull over the word
 * [p, p + n): leading white space and a sign are accepted, the digits
 * must be followed by the end of the word or white space (the rest is
 * ignored), and values out of the 64-bit range fail.  The 32-bit forms
 * keep the low 32 bits, as memcached's assignment does; the unsigned
 * forms accept a negative number unless its 64-bit result has the top
 * bit set ("-1" fails, "-0" is 0).
 */
bool proto_num_i32(const char *p, size_t n, int32_t *out);
bool proto_num_u32(const char *p, size_t n, uint32_t *out);
bool proto_num_u64(const char *p, size_t n, uint64_t *out);

/* Is word @t exactly the NUL-terminated @s? */
bool proto_tok_is(const struct proto_tok *t, const char *s);

/*
 * The data block of a storage command whose line (@line_size bytes) is
 * parsed and whose length is @vlen (0..INT_MAX - 2): refuse it when too
 * large (swallowing it), wait for it, check its "\r\n".  cmd->noreply
 * must already say whether errors are silent.
 */
proto_status_t proto_take_block(struct proto_cmd *cmd, const char *buf,
                                size_t len, size_t line_size, size_t vlen,
                                const struct proto_limits *lim,
                                size_t *out_consumed);

/* The store mode of a storage command, classic or tagged (tset...). */
proto_store_mode_t proto_store_mode(proto_cmd_type_t type);

/* Set cmd up for a PROTO_EINVAL reply consuming @consumed bytes. */
proto_status_t proto_fail(struct proto_cmd *cmd, proto_err_t err,
                          size_t consumed, size_t swallow,
                          size_t *out_consumed);

/* meta.c: mg ms md ma me (mn needs no parsing). */
proto_status_t proto_parse_meta(struct proto_cmd *cmd,
                                const struct proto_line *ln, const char *buf,
                                size_t len, const struct proto_limits *lim,
                                size_t *out_consumed);

/* parse.c: the watch stream bit named by @p (@n bytes), or -1. */
int proto_watch_lookup(const char *p, size_t n);

/* ext.c: tset tadd treplace tcas invalidate_tag invalidate_prefix. */
proto_status_t proto_parse_ext(struct proto_cmd *cmd,
                               const struct proto_line *ln, const char *buf,
                               size_t len, const struct proto_limits *lim,
                               size_t *out_consumed);

/* ext.c: "watch" whose words name the invalidations stream. */
proto_status_t proto_parse_watch_invalidations(struct proto_cmd *cmd,
                                               const struct proto_line *ln,
                                               size_t *out_consumed);

#endif /* CORRAL_PROTO_INTERNAL_H */
