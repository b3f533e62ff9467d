/*
 * test_proto.c - the classic text commands and framing, as memcached
 * 1.6.18 answers them.
 *
 * Each table row is an input and the transcript of what the parse loop
 * does with it (test_proto_harness.h explains the notation).  The rows
 * were written from a real memcached 1.6.18 (memcached -U 0 -l 127.0.0.1
 * -p <port>) fed the same bytes; the comment above each group gives the
 * replies it sent, in order.  An OK event stands for whatever the command
 * answers when executed (STORED, VALUE ... END, a number, ...); an error
 * event is the exact error line, "~" when noreply silenced it.  Every row
 * is also replayed split at every byte boundary.
 */
#include "proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cu_main.h"
#include "test_proto_harness.h"

/* Long keys as literals: K250 is the longest valid key. */
#define K10 "kkkkkkkkkk"
#define K50 K10 K10 K10 K10 K10
#define K250 K50 K50 K50 K50 K50
#define K251 K250 "k"

#define BAD_FORMAT "CLIENT_ERROR bad command line format"
#define BAD_CHUNK "CLIENT_ERROR bad data chunk"
#define TOO_LARGE "SERVER_ERROR object too large for cache"
#define BAD_EXPTIME "CLIENT_ERROR invalid exptime argument"
#define BAD_DELTA "CLIENT_ERROR invalid numeric delta argument"
#define DELETE_USAGE                                                          \
    "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]"

/* ------------------------------------------------------------------ */
/* Storage commands                                                   */

static const struct tcase storage_cases[] = {
    /* STORED, VALUE a 0 1 / x / END */
    {"set a 0 0 1\r\nx\r\nget a\r\n", "set a =x | get a"},
    /* the block is read as 1 + 2 bytes ("x", "yz"); "\r\n" is then an
     * empty command: CLIENT_ERROR bad data chunk, ERROR, VALUE.. END */
    {"set a 0 0 1\r\nxyz\r\nget a\r\n", BAD_CHUNK " | ERROR | get a"},
    {"set a 0 0 1\r\nxy\r\nmn\r\n", BAD_CHUNK " | ERROR | mn"},
    /* noreply silences the bad chunk: ERROR, MN */
    {"set a 0 0 1 noreply\r\nxyz\r\nmn\r\n", "~" BAD_CHUNK " | ERROR | mn"},
    /* "\nm" is the bad terminator; "n" is then an unknown command */
    {"set a 0 0 1\r\nx\nmn\r\n", BAD_CHUNK " | ERROR"},
    /* a command line may end in a bare \n: STORED, MN */
    {"set a 0 0 1\nx\r\nmn\r\n", "set a =x | mn"},
    /* a key too long: the block is not swallowed but read as a
     * command: CLIENT_ERROR bad command line format, ERROR, MN */
    {"set " K251 " 0 0 1\r\nx\r\nmn\r\n", BAD_FORMAT " | ERROR | mn"},
    {"set " K251 " 0 0 1 noreply\r\nx\r\nmn\r\n",
     "~" BAD_FORMAT " | ERROR | mn"},
    {"add " K251 " 0 0 1\r\nx\r\nmn\r\n", BAD_FORMAT " | ERROR | mn"},
    {"replace " K251 " 0 0 1\r\nx\r\nmn\r\n", BAD_FORMAT " | ERROR | mn"},
    {"append " K251 " 0 0 1\r\nx\r\nmn\r\n", BAD_FORMAT " | ERROR | mn"},
    {"prepend " K251 " 0 0 1\r\nx\r\nmn\r\n", BAD_FORMAT " | ERROR | mn"},
    {"cas " K251 " 0 0 1 1\r\nx\r\nmn\r\n", BAD_FORMAT " | ERROR | mn"},
    {"set " K250 " 0 0 1\r\nx\r\nmn\r\n", "set " K250 " =x | mn"},
    /* bad numbers: no swallow either */
    {"set a 0 0 -1\r\nx\r\nmn\r\n", BAD_FORMAT " | ERROR | mn"},
    {"set a 0 0 abc\r\nx\r\nmn\r\n", BAD_FORMAT " | ERROR | mn"},
    {"set a 0 0 abc noreply\r\nx\r\nmn\r\n", "~" BAD_FORMAT " | ERROR | mn"},
    {"set a -1 0 1\r\nx\r\nmn\r\n", BAD_FORMAT " | ERROR | mn"},
    {"set a 18446744073709551616 0 1\r\nx\r\nget a\r\n",
     BAD_FORMAT " | ERROR | get a"},
    {"set a 0 9999999999999999999999 1\r\nx\r\nget a\r\n",
     BAD_FORMAT " | ERROR | get a"},
    {"set a 0x10 0 1\r\nx\r\nget a\r\n", BAD_FORMAT " | ERROR | get a"},
    {"set a 5x 0 1\r\nx\r\nmn\r\n", BAD_FORMAT " | ERROR | mn"},
    /* <bytes> keeps its low 32 bits: 4294967297 stores one byte */
    {"set a 0 0 4294967297\r\nx\r\nmn\r\n", "set a =x | mn"},
    {"set a 0 0 -4294967295\r\nx\r\nmn\r\n", "set a =x | mn"},
    /* above INT_MAX - 2 */
    {"set a 0 0 2147483647\r\nx\r\nmn\r\n", BAD_FORMAT " | ERROR | mn"},
    {"set a 0 0 2147483646\r\nx\r\nmn\r\n", BAD_FORMAT " | ERROR | mn"},
    /* the word count: ERROR, and the block is a command (ERROR) */
    {"set a 0 0\r\nx\r\nmn\r\n", "ERROR | ERROR | mn"},
    {"set a 0 0 1 noreply extra\r\nx\r\nmn\r\n", "ERROR | ERROR | mn"},
    /* a 7th word that is not "noreply" is ignored: STORED */
    {"set a 0 0 1 extra\r\nx\r\nmn\r\n", "set a =x | mn"},
    {"set a 0 0 1 norepl\r\nx\r\nmn\r\n", "set a =x | mn"},
    {"set a 0 0 1 noreply\r\nx\r\nmn\r\n", "set a =x nr | mn"},
    /* strtol leniency: signs, leading and trailing white space */
    {"set a 0 0 +1\r\nx\r\nget a\r\n", "set a =x | get a"},
    {"set a +5 0 1\r\nx\r\nget a\r\n", "set a =x | get a"},
    {"set a \t5 0 1\r\nx\r\nget a\r\n", "set a =x | get a"},
    {"set a 5\t 0 1\r\nx\r\nget a\r\n", "set a =x | get a"},
    {"set a 1\vzz 0 1\r\nx\r\nmn\r\n", "set a =x | mn"},
    {"set a 0 0 1\r\r\nx\r\nget a\r\n", "set a =x | get a"},
    /* spaces anywhere; only spaces separate words */
    {"set  a  0  0  1 \r\nx\r\nget a\r\n", "set a =x | get a"},
    {" set a 0 0 1\r\nx\r\nget a\r\n", "set a =x | get a"},
    {"set\ta 0 0 1\r\nx\r\nmn\r\n", "ERROR | ERROR | mn"},
    {"SET a 0 0 1\r\nx\r\nmn\r\n", "ERROR | ERROR | mn"},
    /* empty and CRLF-holding blocks */
    {"set a 0 0 0\r\n\r\nget a\r\n", "set a = | get a"},
    {"set a 0 0 3\r\na\r\n\r\nget a\r\n", "set a =a\r\n | get a"},
    /* cas */
    {"cas a 0 0 1\r\nx\r\nmn\r\n", "ERROR | ERROR | mn"},
    {"cas a 0 0 1 abc\r\nx\r\nmn\r\n", BAD_FORMAT " | ERROR | mn"},
    {"cas a 0 0 1 -1\r\nx\r\nmn\r\n", BAD_FORMAT " | ERROR | mn"},
    {"cas a 0 0 1 18446744073709551615\r\nx\r\nmn\r\n", "cas a =x | mn"},
    {"cas a 0 0 1 18446744073709551616\r\nx\r\nmn\r\n",
     BAD_FORMAT " | ERROR | mn"},
    {"cas a 0 0 1 1 noreply\r\nx\r\nmn\r\n", "cas a =x nr | mn"},
    {"cas a 0 0 1 1 noreply x\r\nx\r\nmn\r\n", "ERROR | ERROR | mn"},
    /* "noreply" in the <cas> position: silently a bad number */
    {"cas a 0 0 1 noreply\r\nx\r\nmn\r\n", "~" BAD_FORMAT " | ERROR | mn"},
    {"append a 0 0 1\r\nx\r\nget a\r\n", "append a =x | get a"},
    {"prepend zz 0 0 1\r\nx\r\nmn\r\n", "prepend zz =x | mn"},
    {"add a 0 0 1\r\nx\r\nmn\r\n", "add a =x | mn"},
    {"replace zz 0 0 1\r\nx\r\nmn\r\n", "replace zz =x | mn"},
    /* an unfinished block waits */
    {"set a 0 0 5\r\nabc", "AGAIN"},
    {"set a 0 0 1\r\nx\r", "AGAIN"},
};

/*
 * Too large: memcached replies SERVER_ERROR object too large for cache
 * and swallows <bytes> + 2 bytes whatever they are (here value_max = 4
 * stands for -I).  noreply silences the error, not the swallow.
 */
static const struct tcase too_large_cases[] = {
    {"set a 0 0 5\r\nhello\r\nmn\r\n", TOO_LARGE " +7 | mn"},
    {"set a 0 0 5 noreply\r\nhello\r\nmn\r\n", "~" TOO_LARGE " +7 | mn"},
    {"set a 0 0 5\r\nhelloXYmn\r\n", TOO_LARGE " +7 | mn"},
    {"add a 0 0 5\r\nhello\r\nmn\r\n", TOO_LARGE " +7 | mn"},
    {"cas a 0 0 5 9\r\nhello\r\nmn\r\n", TOO_LARGE " +7 | mn"},
    {"set a 0 0 4\r\nhell\r\nmn\r\n", "set a =hell | mn"},
    /* the swallow is not over until all of it has arrived */
    {"set a 0 0 5\r\nhel", TOO_LARGE " +7 | SWALLOW"},
    /* the bad-format checks come first */
    {"set a 0 0 5 6 7\r\nhello\r\n", "ERROR | ERROR"},
};

static void
test_storage(void)
{
    TABLE("storage", storage_cases);
    TABLE_LIMIT("too large", too_large_cases, 4);
}

static void
test_storage_fields(void)
{
    struct proto_cmd c;
    size_t used;

    /* client flags keep their low 32 bits, as memcached stores them:
     * "set a 4294967297 ..." reads back as VALUE a 1 1 */
    CU_ASSERT_EQUAL(parse1(&c, "set a 4294967297 0 1\r\nx\r\n", &used),
                    PROTO_OK);
    CU_ASSERT_EQUAL(c.flags, 1);
    CU_ASSERT_EQUAL(used, 25);
    CU_ASSERT_EQUAL(parse1(&c, "set a 4294967296 0 1\r\nx\r\n", NULL),
                    PROTO_OK);
    CU_ASSERT_EQUAL(c.flags, 0);
    CU_ASSERT_EQUAL(
        parse1(&c, "set a 18446744073709551615 0 1\r\nx\r\n", NULL),
        PROTO_OK);
    CU_ASSERT_EQUAL(c.flags, 4294967295u);
    /* strtoul wraps a negative; only a "negative-looking" result fails */
    CU_ASSERT_EQUAL(
        parse1(&c, "set a -18446744073709551615 0 1\r\nx\r\n", NULL),
        PROTO_OK);
    CU_ASSERT_EQUAL(c.flags, 1);
    CU_ASSERT_EQUAL(parse1(&c, "set a -0 0 1\r\nx\r\n", NULL), PROTO_OK);
    CU_ASSERT_EQUAL(c.flags, 0);
    /* exptime is an int32 the same way: 2147483648 wraps negative (the
     * item is born expired), 4294967296 is 0 (never expires) */
    CU_ASSERT_EQUAL(parse1(&c, "set a 0 2147483648 1\r\nx\r\n", NULL),
                    PROTO_OK);
    CU_ASSERT_EQUAL(c.exptime, INT32_MIN);
    CU_ASSERT_EQUAL(parse1(&c, "set a 0 4294967296 1\r\nx\r\n", NULL),
                    PROTO_OK);
    CU_ASSERT_EQUAL(c.exptime, 0);
    CU_ASSERT_EQUAL(parse1(&c, "set a 0 -1 1\r\nx\r\n", NULL), PROTO_OK);
    CU_ASSERT_EQUAL(c.exptime, -1);
    CU_ASSERT_EQUAL(parse1(&c, "set a 7 300 3 noreply\r\nabc\r\n", NULL),
                    PROTO_OK);
    CU_ASSERT_EQUAL(c.type, PROTO_CMD_SET);
    CU_ASSERT_EQUAL(c.store_mode, PROTO_STORE_SET);
    CU_ASSERT_EQUAL(c.flags, 7);
    CU_ASSERT_EQUAL(c.exptime, 300);
    CU_ASSERT_EQUAL(c.nvalue, 3);
    CU_ASSERT(c.noreply);
    CU_ASSERT_EQUAL(
        parse1(&c, "cas k 1 2 1 18446744073709551615\r\nx\r\n", NULL),
        PROTO_OK);
    CU_ASSERT_EQUAL(c.store_mode, PROTO_STORE_CAS);
    CU_ASSERT_EQUAL(c.cas, UINT64_MAX);
    CU_ASSERT_FALSE(c.noreply);
    CU_ASSERT_EQUAL(parse1(&c, "add k 0 0 1\r\nx\r\n", NULL), PROTO_OK);
    CU_ASSERT_EQUAL(c.store_mode, PROTO_STORE_ADD);
    CU_ASSERT_EQUAL(parse1(&c, "replace k 0 0 1\r\nx\r\n", NULL), PROTO_OK);
    CU_ASSERT_EQUAL(c.store_mode, PROTO_STORE_REPLACE);
    CU_ASSERT_EQUAL(parse1(&c, "append k 0 0 1\r\nx\r\n", NULL), PROTO_OK);
    CU_ASSERT_EQUAL(c.store_mode, PROTO_STORE_APPEND);
    CU_ASSERT_EQUAL(parse1(&c, "prepend k 0 0 1\r\nx\r\n", NULL), PROTO_OK);
    CU_ASSERT_EQUAL(c.store_mode, PROTO_STORE_PREPEND);
    /* AGAIN says how many bytes the whole command needs */
    CU_ASSERT_EQUAL(parse1(&c, "set a 0 0 10\r\nab", &used), PROTO_AGAIN);
    CU_ASSERT_EQUAL(used, 0);
    CU_ASSERT_EQUAL(c.need, 14 + 10 + 2);
    CU_ASSERT_EQUAL(parse1(&c, "set a 0 0", &used), PROTO_AGAIN);
    CU_ASSERT_EQUAL(c.need, 0);
    /* too large: the key and type stay valid (memcached unlinks the old
     * item for set), the line is consumed and the block swallowed */
    harness_limits_default();
    harness_limits.value_max = 10;
    CU_ASSERT_EQUAL(proto_parse(&c, "set big 0 0 11\r\n", 16, &harness_limits,
                                &used),
                    PROTO_EINVAL);
    CU_ASSERT_EQUAL(c.err, PROTO_ERR_TOO_LARGE);
    CU_ASSERT_EQUAL(c.type, PROTO_CMD_SET);
    CU_ASSERT_EQUAL(c.nkey, 3);
    CU_ASSERT_EQUAL(memcmp(c.key, "big", 3), 0);
    CU_ASSERT_EQUAL(used, 16);
    CU_ASSERT_EQUAL(c.swallow, 13);
    harness_limits_default();
}

/* ------------------------------------------------------------------ */
/* Retrieval                                                          */

static const struct tcase get_cases[] = {
    {"get a b\r\n", "get a b"},
    /* no key: ERROR */
    {"get\r\n", "ERROR"},
    {"get \r\n", "ERROR"},
    {"gets\r\n", "ERROR"},
    {"gets   \r\n", "ERROR"},
    /* one key too long spoils the command: only CLIENT_ERROR is sent,
     * with no VALUE for the keys before it: CLIENT_ERROR.., MN */
    {"get a " K251 " b\r\nmn\r\n", BAD_FORMAT " | mn"},
    {"get " K251 "\r\nmn\r\n", BAD_FORMAT " | mn"},
    {"gets a " K251 "\r\nmn\r\n", BAD_FORMAT " | mn"},
    {"get " K250 "\r\n", "get " K250},
    /* duplicates are answered each time */
    {"get a a a\r\n", "get a a a"},
    {"get  a   b  \r\n", "get a b"},
    /* a tab is part of the key: END (a miss) */
    {"get a\tb\r\n", "get a\tb"},
    {"get a\r\r\n", "get a\r"},
    /* "noreply" is just a key here */
    {"get a noreply\r\nmn\r\n", "get a noreply | mn"},
    {"bget a\r\n", "bget a"},
    /* gat <exptime> <key>*: no key at all is a plain END */
    {"gat\r\n", "ERROR"},
    {"gat 10\r\n", "gat"},
    {"gat 10 a\r\n", "gat a"},
    {"gats 10 a b\r\n", "gats a b"},
    {"gat x a\r\n", BAD_EXPTIME},
    {"gat 99999999999999999999 a\r\n", BAD_EXPTIME},
    {"gat -1 zz\r\n", "gat zz"},
    {"gat 10 " K251 "\r\n", BAD_FORMAT},
    {"gat 10 noreply\r\n", "gat noreply"},
    {"geta\r\n", "ERROR"},
    {"getz a\r\n", "ERROR"},
    /* more than memcached's 24 tokens: it tokenizes again, any count */
    {"get k0 k1 k2 k3 k4 k5 k6 k7 k8 k9 k10 k11 k12 k13 k14 k15 k16 k17 "
     "k18 k19 k20 k21 k22 k23 k24 k25 k26 k27 k28 k29\r\n",
     "get k0 k1 k2 k3 k4 k5 k6 k7 k8 k9 k10 k11 k12 k13 k14 k15 k16 k17 "
     "k18 k19 k20 k21 k22 k23 k24 k25 k26 k27 k28 k29"},
    {"get a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a "
     K251 "\r\n",
     BAD_FORMAT},
    {"gat 1 a a a a a a a a a a a a a a a a a a a a a a a a a a a a a "
     "a b\r\n",
     "gat a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a b"},
};

static void
test_get(void)
{
    TABLE("get", get_cases);
}

static void
test_get_keys(void)
{
    struct proto_cmd c;
    struct proto_iter it;
    const char *k;
    size_t n;

    CU_ASSERT_EQUAL(parse1(&c, "gats 300 alpha  beta gamma \r\n", NULL),
                    PROTO_OK);
    CU_ASSERT_EQUAL(c.type, PROTO_CMD_GATS);
    CU_ASSERT_EQUAL(c.exptime, 300);
    CU_ASSERT_EQUAL(c.nkeys, 3);
    proto_keys_begin(&it, &c);
    CU_ASSERT(proto_iter_next(&it, &k, &n));
    CU_ASSERT(n == 5 && memcmp(k, "alpha", 5) == 0);
    CU_ASSERT(proto_iter_next(&it, &k, &n));
    CU_ASSERT(n == 4 && memcmp(k, "beta", 4) == 0);
    CU_ASSERT(proto_iter_next(&it, &k, &n));
    CU_ASSERT(n == 5 && memcmp(k, "gamma", 5) == 0);
    CU_ASSERT_FALSE(proto_iter_next(&it, &k, &n));
    CU_ASSERT_FALSE(proto_iter_next(&it, &k, &n));

    /* the keys before a too-long one are kept: memcached looked them
     * up (and touched them, for gat) before failing */
    CU_ASSERT_EQUAL(parse1(&c, "gat 5 a b " K251 " c\r\n", NULL),
                    PROTO_EINVAL);
    CU_ASSERT_EQUAL(c.err, PROTO_ERR_BAD_FORMAT);
    CU_ASSERT_EQUAL(c.nkeys, 2);
    proto_keys_begin(&it, &c);
    CU_ASSERT(proto_iter_next(&it, &k, &n) && n == 1 && k[0] == 'a');
    CU_ASSERT(proto_iter_next(&it, &k, &n) && n == 1 && k[0] == 'b');
    CU_ASSERT_FALSE(proto_iter_next(&it, &k, &n));

    /* "gat 10": no keys */
    CU_ASSERT_EQUAL(parse1(&c, "gat 10\r\n", NULL), PROTO_OK);
    CU_ASSERT_EQUAL(c.nkeys, 0);
    proto_keys_begin(&it, &c);
    CU_ASSERT_FALSE(proto_iter_next(&it, &k, &n));

    /* an iterator over a command with no keys at all */
    CU_ASSERT_EQUAL(parse1(&c, "version\r\n", NULL), PROTO_OK);
    proto_keys_begin(&it, &c);
    CU_ASSERT_FALSE(proto_iter_next(&it, &k, &n));
}

/* A 10,000-key get: parsed in place, counted, iterated. */
static void
test_get_many_keys(void)
{
    enum { NKEYS = 10000 };
    size_t cap = 4 + NKEYS * 12 + 2, len, used;
    char *buf = malloc(cap);
    struct proto_cmd c;
    struct proto_iter it;
    const char *k;
    size_t n, i = 0;
    char want[16];

    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    len = (size_t)sprintf(buf, "get");
    for (i = 0; i < NKEYS; i++) {
        len += (size_t)sprintf(buf + len, " key:%u", (unsigned)i);
    }
    memcpy(buf + len, "\r\n", 2);
    len += 2;
    harness_limits_default();
    CU_ASSERT_EQUAL(proto_parse(&c, buf, len, &harness_limits, &used),
                    PROTO_OK);
    CU_ASSERT_EQUAL(used, len);
    CU_ASSERT_EQUAL(c.nkeys, NKEYS);
    proto_keys_begin(&it, &c);
    for (i = 0; proto_iter_next(&it, &k, &n); i++) {
        int wn = sprintf(want, "key:%u", (unsigned)i);
        if (n != (size_t)wn || memcmp(k, want, n) != 0) {
            break;
        }
    }
    CU_ASSERT_EQUAL(i, NKEYS);
    /* without its newline, past line_max, it is still waited for */
    CU_ASSERT_EQUAL(proto_parse(&c, buf, len - 2, &harness_limits, &used),
                    PROTO_AGAIN);
    /* unless it passes multiget_line_max */
    harness_limits.multiget_line_max = 4096;
    CU_ASSERT_EQUAL(proto_parse(&c, buf, 4096, &harness_limits, &used),
                    PROTO_AGAIN);
    CU_ASSERT_EQUAL(proto_parse(&c, buf, 4097, &harness_limits, &used),
                    PROTO_ECLOSE);
    harness_limits_default();
    free(buf);
}

/* ------------------------------------------------------------------ */
/* Other commands                                                     */

static const struct tcase other_cases[] = {
    /* incr/decr <key> <delta> [noreply] */
    {"incr n 5\r\ndecr n 100\r\n", "incr n | decr n"},
    {"incr n\r\n", "ERROR"},
    {"decr n\r\n", "ERROR"},
    {"incr n 1 noreply\r\nmn\r\n", "incr n nr | mn"},
    /* a 4th word that is not noreply is ignored: 2 */
    {"incr n 1 2\r\nmn\r\n", "incr n | mn"},
    {"incr n 1 noreply x\r\nmn\r\n", "ERROR | mn"},
    {"incr n x\r\n", BAD_DELTA},
    {"incr n -1\r\n", BAD_DELTA},
    {"incr n 18446744073709551615\r\n", "incr n"},
    {"incr n 18446744073709551616\r\n", BAD_DELTA},
    {"incr n x noreply\r\nmn\r\n", "~" BAD_DELTA " | mn"},
    {"incr n noreply\r\nmn\r\n", "~" BAD_DELTA " | mn"},
    /* the key is checked before the delta */
    {"incr " K251 " 1\r\n", BAD_FORMAT},
    {"incr " K251 " x\r\n", BAD_FORMAT},
    {"incr n +1\r\n", "incr n"},
    {"incr n 00000000000000000000000001\r\n", "incr n"},
    /* touch <key> <exptime> [noreply] */
    {"touch n\r\n", "ERROR"},
    {"touch n 10\r\n", "touch n"},
    {"touch n x\r\n", BAD_EXPTIME},
    {"touch n 10 noreply\r\nmn\r\n", "touch n nr | mn"},
    {"touch n x noreply\r\nmn\r\n", "~" BAD_EXPTIME " | mn"},
    {"touch " K251 " 10\r\n", BAD_FORMAT},
    {"touch " K251 " x\r\n", BAD_FORMAT},
    {"touch n 10 a b\r\n", "ERROR"},
    /* delete <key> [0] [noreply] */
    {"delete\r\n", "ERROR"},
    {"delete zz\r\n", "delete zz"},
    {"delete zz 0\r\n", "delete zz"},
    {"delete zz 1\r\n", DELETE_USAGE},
    {"delete zz 00\r\n", DELETE_USAGE},
    {"delete zz 0\v\r\n", DELETE_USAGE},
    {"delete zz noreply\r\nmn\r\n", "delete zz nr | mn"},
    {"delete zz 0 noreply\r\nmn\r\n", "delete zz nr | mn"},
    {"delete zz 1 noreply\r\nmn\r\n", "~" DELETE_USAGE " | mn"},
    {"delete zz noreply 0\r\nmn\r\n", DELETE_USAGE " | mn"},
    {"delete zz 0 0\r\nmn\r\n", DELETE_USAGE " | mn"},
    {"delete zz 0 noreply x\r\nmn\r\n", "ERROR | mn"},
    {"delete " K251 "\r\n", BAD_FORMAT},
    /* the usage check comes before the key check */
    {"delete " K251 " 5\r\n", DELETE_USAGE},
    {"delete " K251 " noreply\r\nmn\r\n", "~" BAD_FORMAT " | mn"},
    /* verbosity <n> [noreply] */
    {"verbosity\r\n", "ERROR"},
    {"verbosity 1\r\n", "verbosity"},
    {"verbosity 1 noreply\r\nmn\r\n", "verbosity nr | mn"},
    {"verbosity x\r\n", BAD_FORMAT},
    {"verbosity x noreply\r\nmn\r\n", "~" BAD_FORMAT " | mn"},
    {"verbosity 1 2\r\n", "verbosity"},
    {"verbosity 1 2 3\r\n", "ERROR"},
    {"verbosity -1\r\n", BAD_FORMAT},
    {"verbosity noreply\r\nmn\r\n", "~" BAD_FORMAT " | mn"},
    /* flush_all [delay] [noreply] */
    {"flush_all\r\n", "flush_all"},
    {"flush_all 0\r\n", "flush_all"},
    {"flush_all noreply\r\nmn\r\n", "flush_all nr | mn"},
    {"flush_all 0 noreply\r\nmn\r\n", "flush_all nr | mn"},
    {"flush_all x\r\n", BAD_EXPTIME},
    {"flush_all -1\r\n", "flush_all"},
    {"flush_all x noreply\r\nmn\r\n", "~" BAD_EXPTIME " | mn"},
    {"flush_all 1 2\r\n", "flush_all"},
    {"flush_all 1 2 3\r\n", "ERROR"},
    {"flush_all 9999999999999999999999\r\n", BAD_EXPTIME},
    {"flush_all noreply 5\r\nmn\r\n", BAD_EXPTIME " | mn"},
    /* stats [args]: the parser only splits */
    {"stats\r\n", "stats"},
    {"stats settings\r\n", "stats settings"},
    {"stats  detail   on \r\n", "stats detail on"},
    {"stats cachedump 1 1\r\n", "stats cachedump 1 1"},
    {"stats noreply\r\nmn\r\n", "stats noreply | mn"},
    /* version, quit, mn ignore extra words */
    {"version\r\n", "version"},
    {"version x\r\n", "version"},
    {"quit\r\n", "quit"},
    {"quit x\r\n", "quit"},
    {"mn\r\n", "mn"},
    {"mn extra\r\n", "mn"},
    {"shutdown\r\n", "shutdown"},
    {"shutdown graceful x\r\n", "shutdown"},
    /* watch [stream...]: OK, or ERROR for an unknown stream */
    {"watch\r\n", "watch"},
    {"watch fetchers\r\n", "watch fetchers"},
    {"watch fetchers mutations evictions connevents\r\n",
     "watch fetchers mutations evictions connevents"},
    {"watch bogus\r\nmn\r\n", "ERROR | mn"},
    /* Corral's own stream (memcached: ERROR); see test_ext.c */
    {"watch invalidations\r\nmn\r\n", "watch invalidations | mn"},
    {"watch fetchers noreply\r\nmn\r\n", "~ERROR | mn"},
    {"watch noreply\r\nmn\r\n", "~ERROR | mn"},
    /* unknown commands and empty lines: ERROR */
    {"\r\n", "ERROR"},
    {"\n", "ERROR"},
    {"  \r\n", "ERROR"},
    {"m\r\n", "ERROR"},
    {"x\r\n", "ERROR"},
    {"mz\r\n", "ERROR"},
    {"misbehave\r\n", "ERROR"},
    {"GET a\r\n", "ERROR"},
};

static void
test_other(void)
{
    TABLE("other", other_cases);
}

static void
test_other_fields(void)
{
    struct proto_cmd c;

    CU_ASSERT_EQUAL(parse1(&c, "incr n 18446744073709551615\r\n", NULL),
                    PROTO_OK);
    CU_ASSERT_EQUAL(c.type, PROTO_CMD_INCR);
    CU_ASSERT_EQUAL(c.delta, UINT64_MAX);
    /* memcached accepts this "negative" delta as 1 */
    CU_ASSERT_EQUAL(parse1(&c, "decr n -18446744073709551615\r\n", NULL),
                    PROTO_OK);
    CU_ASSERT_EQUAL(c.type, PROTO_CMD_DECR);
    CU_ASSERT_EQUAL(c.delta, 1);
    CU_ASSERT_EQUAL(parse1(&c, "touch n -5 noreply\r\n", NULL), PROTO_OK);
    CU_ASSERT_EQUAL(c.exptime, -5);
    CU_ASSERT(c.noreply);
    CU_ASSERT_EQUAL(parse1(&c, "flush_all 90 noreply\r\n", NULL), PROTO_OK);
    CU_ASSERT_EQUAL(c.exptime, 90);
    CU_ASSERT(c.noreply);
    CU_ASSERT_EQUAL(parse1(&c, "flush_all\r\n", NULL), PROTO_OK);
    CU_ASSERT_EQUAL(c.exptime, 0);
    CU_ASSERT_EQUAL(parse1(&c, "verbosity 3\r\n", NULL), PROTO_OK);
    CU_ASSERT_EQUAL(c.level, 3);
    CU_ASSERT_EQUAL(parse1(&c, "shutdown\r\n", NULL), PROTO_OK);
    CU_ASSERT_EQUAL(c.shutdown, PROTO_SHUTDOWN_NORMAL);
    CU_ASSERT_EQUAL(parse1(&c, "shutdown graceful\r\n", NULL), PROTO_OK);
    CU_ASSERT_EQUAL(c.shutdown, PROTO_SHUTDOWN_GRACEFUL);
    /* with -A, memcached answers these CLIENT_ERROR invalid shutdown mode */
    CU_ASSERT_EQUAL(parse1(&c, "shutdown x\r\n", NULL), PROTO_OK);
    CU_ASSERT_EQUAL(c.shutdown, PROTO_SHUTDOWN_INVALID);
    CU_ASSERT_EQUAL(parse1(&c, "shutdown noreply\r\n", NULL), PROTO_OK);
    CU_ASSERT_EQUAL(c.shutdown, PROTO_SHUTDOWN_INVALID);
    CU_ASSERT_EQUAL(parse1(&c, "shutdown graceful x\r\n", NULL), PROTO_OK);
    CU_ASSERT_EQUAL(c.shutdown, PROTO_SHUTDOWN_INVALID);
    CU_ASSERT_EQUAL(parse1(&c, "watch\r\n", NULL), PROTO_OK);
    CU_ASSERT_EQUAL(c.watch, PROTO_WATCH(FETCHERS));
    CU_ASSERT_EQUAL(parse1(&c, "watch evictions mutations\r\n", NULL),
                    PROTO_OK);
    CU_ASSERT_EQUAL(c.watch, PROTO_WATCH(EVICTIONS) | PROTO_WATCH(MUTATIONS));
    CU_ASSERT_EQUAL(c.nargs, 2);
    CU_ASSERT_EQUAL(parse1(&c, "stats items\r\n", NULL), PROTO_OK);
    CU_ASSERT_EQUAL(c.nargs, 1);
    CU_ASSERT_EQUAL(parse1(&c, "stats\r\n", NULL), PROTO_OK);
    CU_ASSERT_EQUAL(c.nargs, 0);
}

/* ------------------------------------------------------------------ */
/* Framing                                                            */

/* A NUL ends the line's text (memcached works on C strings). */
static void
test_nul_bytes(void)
{
    static const char a[] = "set a 0 0 1\0junk\r\nx\r\nget a\r\n";
    static const char b[] = "get a\0b\r\n";
    static const char c[] = "set a\0b 0 0 1\r\nx\r\nmn\r\n";
    static const char d[] = "set a 0 0 3\r\n\0\0\0\r\nmn\r\n";

    harness_limits_default();
    check_input_n("nul a", a, sizeof(a) - 1, "set a =x | get a", 0);
    check_input_n("nul b", b, sizeof(b) - 1, "get a", 0);
    check_input_n("nul c", c, sizeof(c) - 1, "ERROR | ERROR | mn", 0);
    /* in a data block a NUL is just a byte */
    {
        struct proto_cmd cmd;
        size_t used;

        CU_ASSERT_EQUAL(proto_parse(&cmd, d, sizeof(d) - 1, &harness_limits,
                                    &used),
                        PROTO_OK);
        CU_ASSERT_EQUAL(cmd.nvalue, 3);
        CU_ASSERT_EQUAL(used, 18);
    }
}

static char *
repeat(const char *head, char c, size_t n, const char *tail)
{
    size_t hl = strlen(head), tl = strlen(tail);
    char *s = malloc(hl + n + tl + 1);

    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    memcpy(s, head, hl);
    memset(s + hl, c, n);
    memcpy(s + hl + n, tail, tl + 1);
    return s;
}

/*
 * Unterminated lines: memcached closes the connection once more than 2048
 * bytes are buffered without a '\n', unless the line is a get/gets after
 * at most 100 spaces.  A long line that arrives with its '\n' is parsed.
 */
static void
test_long_lines(void)
{
    struct {
        const char *head;
        char c;
        size_t n;
        const char *tail;
        const char *want;
        int nosplit;
    } rows[] = {
        /* 2048 bytes: waits; 2049: closed */
        {"set ", 'k', 2044, "", "AGAIN", 0},
        {"set ", 'k', 2045, "", "CLOSE", 0},
        {"mn\r\nset ", 'k', 2044, "", "mn | AGAIN", 0},
        {"mn\r\nset ", 'k', 2045, "", "mn | CLOSE", 0},
        {"mn\r\n", 'x', 2048, "", "mn | AGAIN", 0},
        {"mn\r\n", 'x', 2049, "", "mn | CLOSE", 0},
        /* all at once, a 3000-byte key is just too long: CLIENT_ERROR,
         * ERROR, MN.  Split, memcached would close: not split-tested. */
        {"set ", 'k', 3000, " 0 0 1\r\nx\r\nmn\r\n",
         BAD_FORMAT " | ERROR | mn", 1},
        {"set ", 'k', 16000, " 0 0 1\r\nx\r\nmn\r\n",
         BAD_FORMAT " | ERROR | mn", 1},
        /* get and gets may be longer */
        {"get ", 'k', 2045, "", "AGAIN", 0},
        {"gets ", 'k', 3000, "", "AGAIN", 0},
        {"get ", 'k', 3000, "\r\nmn\r\n", BAD_FORMAT " | mn", 0},
        {"get", ' ', 3000, "\r\nmn\r\n", "ERROR | mn", 0},
        /* but not gat, mg or anything else */
        {"gat 0 ", 'a', 3000, "", "CLOSE", 0},
        {"mg ", 'a', 3000, "", "CLOSE", 0},
        {"get", 'a', 3000, "", "CLOSE", 0},
        /* up to 100 leading spaces */
        {"", ' ', 100, "get " K250 K250 K250 K250 K250 K250 K250 K250 K250,
         "AGAIN", 0},
        {"", ' ', 101, "get " K250 K250 K250 K250 K250 K250 K250 K250 K250,
         "CLOSE", 0},
        {"", ' ', 3000, "", "CLOSE", 0},
    };

    harness_limits_default();
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char name[32];
        char *in = repeat(rows[i].head, rows[i].c, rows[i].n, rows[i].tail);

        snprintf(name, sizeof(name), "long #%zu", i);
        check_input_n(name, in, strlen(in), rows[i].want, rows[i].nosplit);
        free(in);
    }
}

/* A '\r' is dropped only right before the '\n', and only if the line has
 * another byte. */
static void
test_line_endings(void)
{
    struct proto_cmd c;
    size_t used;

    CU_ASSERT_EQUAL(parse1(&c, "delete k\r\n", &used), PROTO_OK);
    CU_ASSERT_EQUAL(c.nkey, 1);
    CU_ASSERT_EQUAL(used, 10);
    CU_ASSERT_EQUAL(parse1(&c, "delete k\n", &used), PROTO_OK);
    CU_ASSERT_EQUAL(c.nkey, 1);
    CU_ASSERT_EQUAL(used, 9);
    CU_ASSERT_EQUAL(parse1(&c, "delete k\r\r\n", &used), PROTO_OK);
    CU_ASSERT_EQUAL(c.nkey, 2);
    CU_ASSERT_EQUAL(parse1(&c, "delete k\rx\r\n", &used), PROTO_OK);
    CU_ASSERT_EQUAL(c.nkey, 3);
    CU_ASSERT_EQUAL(parse1(&c, "\r\n", &used), PROTO_EINVAL);
    CU_ASSERT_EQUAL(c.err, PROTO_ERR_ERROR);
    CU_ASSERT_EQUAL(used, 2);
    CU_ASSERT_EQUAL(parse1(&c, "", &used), PROTO_AGAIN);
    CU_ASSERT_EQUAL(parse1(&c, "get a\r", &used), PROTO_AGAIN);
}

/* memcached's tokenizer keeps 23 words: commands with a bounded word
 * count see 24+ words as too many. */
static const struct tcase token_cases[] = {
    {"stats a b c d e f g h i j k l m n o p q r s t u v w x y z\r\n",
     "stats a b c d e f g h i j k l m n o p q r s t u v w x y z"},
    {"delete a b c d e f g h i j k l m n o p q r s t u v w\r\n",
     "ERROR"},
    {"watch fetchers fetchers fetchers fetchers fetchers fetchers "
     "fetchers fetchers fetchers fetchers fetchers fetchers fetchers "
     "fetchers fetchers fetchers fetchers fetchers fetchers fetchers "
     "fetchers fetchers bogus\r\n",
     /* the 23rd word onwards is beyond the tokenizer: not checked */
     "watch fetchers fetchers fetchers fetchers fetchers fetchers "
     "fetchers fetchers fetchers fetchers fetchers fetchers fetchers "
     "fetchers fetchers fetchers fetchers fetchers fetchers fetchers "
     "fetchers fetchers bogus"},
    {"watch fetchers fetchers fetchers fetchers fetchers fetchers "
     "fetchers fetchers fetchers fetchers fetchers fetchers fetchers "
     "fetchers fetchers fetchers fetchers fetchers fetchers fetchers "
     "fetchers bogus\r\n",
     "ERROR"},
};

static void
test_token_limit(void)
{
    TABLE("tokens", token_cases);
}

/* Every row of every table, back to back, parses as the concatenation of
 * the rows' transcripts (rows that end cleanly). */
static void
test_pipeline(void)
{
    const struct tcase *tables[] = {storage_cases, get_cases, other_cases};
    size_t sizes[] = {sizeof(storage_cases) / sizeof(storage_cases[0]),
                      sizeof(get_cases) / sizeof(get_cases[0]),
                      sizeof(other_cases) / sizeof(other_cases[0])};
    size_t cap = 1 << 16, len = 0, calls;
    char *in = malloc(cap);
    struct transcript *want = malloc(sizeof(*want));
    struct transcript *got = malloc(sizeof(*got));

    CU_ASSERT_FATAL(in != NULL && want != NULL && got != NULL);
    want->len = 0;
    want->s[0] = '\0';
    harness_limits_default();
    for (size_t t = 0; t < 3; t++) {
        for (size_t i = 0; i < sizes[t]; i++) {
            const struct tcase *c = &tables[t][i];
            size_t n = strlen(c->in);

            if (strstr(c->want, "AGAIN") || strstr(c->want, "SWALLOW") ||
                strstr(c->want, "CLOSE") || len + n > cap ||
                want->len + strlen(c->want) + 4 >= TRANSCRIPT_MAX) {
                continue;
            }
            memcpy(in + len, c->in, n);
            len += n;
            ts_sep(want);
            ts_str(want, c->want);
        }
    }
    drive(in, len, 0, got, &calls);
    CU_ASSERT_STRING_EQUAL(got->s, want->s);
    /* and split in a few hundred places */
    for (size_t k = 1; k < len; k += 97) {
        drive(in, len, k, got, &calls);
        CU_ASSERT_STRING_EQUAL(got->s, want->s);
    }
    free(in);
    free(want);
    free(got);
}

static void
test_tables(void)
{
    CU_ASSERT_STRING_EQUAL(proto_cmd_name(PROTO_CMD_GET), "get");
    CU_ASSERT_STRING_EQUAL(proto_cmd_name(PROTO_CMD_FLUSH_ALL), "flush_all");
    CU_ASSERT_STRING_EQUAL(proto_cmd_name(PROTO_CMD_NONE), "");
    CU_ASSERT_STRING_EQUAL(proto_cmd_name(PROTO_CMD_COUNT), "");
    for (int t = 1; t < PROTO_CMD_COUNT; t++) {
        const char *n = proto_cmd_name((proto_cmd_type_t)t);
        CU_ASSERT_EQUAL(proto_cmd_lookup(n, strlen(n)), t);
    }
    CU_ASSERT_EQUAL(proto_cmd_lookup("gets", 3), PROTO_CMD_GET);
    CU_ASSERT_EQUAL(proto_cmd_lookup("Get", 3), PROTO_CMD_NONE);
    CU_ASSERT_EQUAL(proto_cmd_lookup("", 0), PROTO_CMD_NONE);
    {
        size_t n;
        const char *l = proto_err_line(PROTO_ERR_BAD_CHUNK, &n);
        CU_ASSERT_EQUAL(n, strlen(BAD_CHUNK) + 2);
        CU_ASSERT_EQUAL(memcmp(l, BAD_CHUNK "\r\n", n), 0);
        l = proto_err_line(PROTO_ERR_COUNT, &n);
        CU_ASSERT_EQUAL(n, 2);
        CU_ASSERT_STRING_EQUAL(proto_err_str(PROTO_ERR_ERROR), "ERROR");
        CU_ASSERT_STRING_EQUAL(proto_err_str(PROTO_ERR_COUNT), "");
    }
}

static const struct cu_test proto_tests[] = {
    CU_TEST(test_storage),     CU_TEST(test_storage_fields),
    CU_TEST(test_get),         CU_TEST(test_get_keys),
    CU_TEST(test_get_many_keys), CU_TEST(test_other),
    CU_TEST(test_other_fields), CU_TEST(test_nul_bytes),
    CU_TEST(test_long_lines),  CU_TEST(test_line_endings),
    CU_TEST(test_token_limit), CU_TEST(test_pipeline),
    CU_TEST(test_tables),      CU_END};

CU_MAIN({"proto", proto_tests, NULL, NULL})
