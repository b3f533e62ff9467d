/*
 * test_meta.c - the meta commands (mg ms md ma mn me), their flags and
 * base64 keys, as memcached 1.6.18 answers them.
 *
 * Tables as in test_proto.c (notation in test_proto_harness.h): an OK
 * event reads "<cmd> <key> <flag letters in request order>", with the
 * decoded key for flag b; the rows were written from a real memcached
 * 1.6.18 fed the same bytes, and each is replayed split at every byte.
 * For meta commands errors are never silenced by q, and an ms error after
 * its <datalen> was read swallows the data block ("+N").
 */
#include "proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cu_main.h"
#include "test_proto_harness.h"

#define K10 "kkkkkkkkkk"
#define K50 K10 K10 K10 K10 K10
#define K250 K50 K50 K50 K50 K50
#define K251 K250 "k"
#define X32 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
#define P16 "P0 P1 P2 P3 P4 P5 P6 P7 P8 P9 P10 P11 P12 P13 P14 P15"
#define B63                                                                   \
    "YWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJj"    \
    "YWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJj"    \
    "YWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJj"    \
    "YWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJjYWJj"

#define BAD_FORMAT "CLIENT_ERROR bad command line format"
#define BAD_CHUNK "CLIENT_ERROR bad data chunk"
#define TOO_LARGE "SERVER_ERROR object too large for cache"
#define DUP "CLIENT_ERROR duplicate flag"
#define INVALID "CLIENT_ERROR invalid flag"
#define BAD_TOKEN "CLIENT_ERROR bad token in command line format"
#define DECODE "CLIENT_ERROR error decoding key"
#define OPAQUE "CLIENT_ERROR opaque token too long"
#define MLEN "CLIENT_ERROR incorrect length for M token"
#define INITIAL "CLIENT_ERROR invalid numeric initial value"
#define DELTA "CLIENT_ERROR invalid numeric delta value"
#define MG_MANY "CLIENT_ERROR options flags are too long"
#define MANY "CLIENT_ERROR options flags too long"
#define INV_OR_DUP "CLIENT_ERROR invalid or duplicate flag"
#define MS_MODE "CLIENT_ERROR invalid mode for ms M token"
#define MA_MODE "CLIENT_ERROR invalid mode for ma M token"

/* ------------------------------------------------------------------ */
/* mg                                                                 */

static const struct tcase mg_cases[] = {
    /* VA 1 / x */
    {"mg a v\r\n", "mg a v"},
    {"mg a\r\n", "mg a"},
    /* VA 1 s1 f0 t-1 c27 ka O123 h1 l0: flags kept in order */
    {"mg a s v f t c k O123 h l\r\n", "mg a svftckOhl"},
    /* q: a miss is silent (MN only) */
    {"mg zz q\r\nmn\r\n", "mg zz q nr | mn"},
    {"mg zz O1 k q\r\nmn\r\n", "mg zz Okq nr | mn"},
    {"mg  a  v \r\n", "mg a v"},
    {"mg\r\n", "ERROR"},
    {"mg " K251 " v\r\n", BAD_FORMAT},
    {"mg " K251 "\r\n", BAD_FORMAT},
    {"mg " K250 " k\r\n", "mg " K250 " k"},
    /* flags are their first byte; a token follows without a space */
    {"mg a v v\r\n", DUP},
    {"mg a s s\r\n", DUP},
    {"mg a vv\r\n", "mg a v"},
    {"mg a x\r\n", INVALID},
    {"mg a E5\r\n", INVALID},
    {"mg a S5\r\n", INVALID},
    {"mg a \xff\r\n", DUP},
    {"mg a x q\r\nmn\r\n", INVALID " | mn"},
    /* the opaque: 'O' and 31 bytes at most */
    {"mg a O\r\n", "mg a O"},
    {"mg a O" X32 "\r\n", OPAQUE},
    {"mg a Oxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n", "mg a O"},
    {"mg zz O" X32 "x q\r\nmn\r\n", OPAQUE " | mn"},
    /* numeric tokens */
    {"mg a T-1\r\n", "mg a T"},
    {"mg a T\r\n", BAD_TOKEN},
    {"mg a Tx\r\n", BAD_TOKEN},
    {"mg a Nx\r\n", BAD_TOKEN},
    {"mg a Rx\r\n", BAD_TOKEN},
    {"mg a R30\r\n", "mg a R"},
    {"mg a N30 T10 R5\r\n", "mg a NTR"},
    {"mg a Pfoo Lbar v\r\n", "mg a PLv"},
    {"mg a u\r\n", "mg a u"},
    /* ms and ma flags are read (and validated) on mg too */
    {"mg a Fx\r\n", BAD_FORMAT},
    {"mg a C5\r\n", "mg a C"},
    {"mg a Cx\r\n", BAD_TOKEN},
    {"mg a Mx\r\n", "mg a M"},
    {"mg a MEE\r\n", MLEN},
    {"mg a Jx\r\n", INITIAL},
    {"mg a Dx\r\n", DELTA},
    {"mg a I\r\n", "mg a I"},
    /* a bad token does not stop the scan: the last message wins, F
     * leaves the message as it was, a duplicate or unknown flag stops */
    {"mg a Tx Jx\r\n", INITIAL},
    {"mg a Jx Tx\r\n", BAD_TOKEN},
    {"mg a Jx Fx\r\n", INITIAL},
    {"mg a b Tx\r\n", BAD_TOKEN},
    {"mg a Tx b\r\n", DECODE},
    {"mg a Tx x\r\n", INVALID},
    {"mg a Tx v v\r\n", DUP},
    {"mg a s v f t c k h l u q O P L T N\r\n", BAD_TOKEN},
    {"mg a s v f t c k h l u q O P L T N R b\r\n", DECODE},
    /* 17 flags fit, 18 do not */
    {"mg a " P16 " P16\r\n", DUP},
    {"mg a " P16 " P16 P17\r\n", MG_MANY},
    {"mg a s v f t c k h l u q O P L T N R b x\r\n", MG_MANY},
    {"mg a s v f t c k h l u q O P L T N R\r\n", BAD_TOKEN},
    /* base64 keys */
    {"mg YWJj b k v\r\n", "mg abc bkv"},
    {"mg eHl6 b k O1 v q\r\nmn\r\n", "mg xyz bkOvq nr | mn"},
};

/* ------------------------------------------------------------------ */
/* ms                                                                 */

static const struct tcase ms_cases[] = {
    /* HD, VA 1 / x */
    {"ms a 1\r\nx\r\nmg a v\r\n", "ms a =x | mg a v"},
    {"ms a 1 c k O9\r\nx\r\nmn\r\n", "ms a ckO =x | mn"},
    {"ms a 1 q\r\nx\r\nmn\r\n", "ms a q =x nr | mn"},
    {"ms a 1 T0 F5 I\r\nx\r\n", "ms a TFI =x"},
    /* before <datalen> is read, errors do not swallow: the block is
     * read as a command (ERROR) */
    {"ms\r\nmn\r\n", "ERROR | mn"},
    {"ms a\r\nx\r\nmn\r\n", BAD_FORMAT " | ERROR | mn"},
    {"ms a S1\r\nx\r\nmn\r\n", BAD_FORMAT " | ERROR | mn"},
    {"ms a x\r\nx\r\nmn\r\n", BAD_FORMAT " | ERROR | mn"},
    {"ms a -1\r\nx\r\nmn\r\n", BAD_FORMAT " | ERROR | mn"},
    {"ms a 2147483646\r\nx\r\nmn\r\n", BAD_FORMAT " | ERROR | mn"},
    {"ms " K251 " 1\r\nx\r\nmn\r\n", BAD_FORMAT " | ERROR | mn"},
    {"ms " K251 " 1 q\r\nx\r\nmn\r\n", BAD_FORMAT " | ERROR | mn"},
    {"ms a 1 " P16 " P16\r\nx\r\nmn\r\n", MANY " | ERROR | mn"},
    /* a base64 key is measured encoded: 252 bytes is too long */
    {"ms " B63 " 1 b\r\nx\r\nmn\r\n", BAD_FORMAT " | ERROR | mn"},
    /* after it, they swallow <datalen> + 2 bytes */
    {"ms a 1 x\r\nx\r\nmn\r\n", INVALID " +3 | mn"},
    {"ms a 1 v v\r\nx\r\nmn\r\n", DUP " +3 | mn"},
    {"ms a 1 " P16 "\r\nx\r\nmn\r\n", DUP " +3 | mn"},
    {"ms a 1 E5\r\nx\r\nmn\r\n", INVALID " +3 | mn"},
    {"ms a 1 Tx\r\nx\r\nmn\r\n", BAD_TOKEN " +3 | mn"},
    {"ms a 1 T\r\nx\r\nmn\r\n", BAD_TOKEN " +3 | mn"},
    {"ms a 1 Tx q\r\nx\r\nmn\r\n", BAD_TOKEN " +3 | mn"},
    {"ms a 1 Fx\r\nx\r\nmn\r\n", BAD_FORMAT " +3 | mn"},
    {"ms a 1 F-1\r\nx\r\nmn\r\n", BAD_FORMAT " +3 | mn"},
    {"ms a 1 Cx\r\nx\r\nmn\r\n", BAD_TOKEN " +3 | mn"},
    {"ms a 1 Jx\r\nx\r\nmn\r\n", INITIAL " +3 | mn"},
    {"ms a 1 Dx\r\nx\r\nmn\r\n", DELTA " +3 | mn"},
    {"ms a 1 b\r\nx\r\nmn\r\n", DECODE " +3 | mn"},
    {"ms a 1 T0 F5 c k O9 b\r\nx\r\nmn\r\n", DECODE " +3 | mn"},
    {"ms a 1 MX\r\nx\r\nmn\r\n", MS_MODE " +3 | mn"},
    {"ms a 1 q MX\r\nx\r\nmn\r\n", MS_MODE " +3 | mn"},
    {"ms a 1 Ms\r\nx\r\nmn\r\n", MS_MODE " +3 | mn"},
    {"ms a 1 Ma\r\nx\r\nmn\r\n", MS_MODE " +3 | mn"},
    {"ms a 1 MXY\r\nx\r\nmn\r\n", MLEN " +3 | mn"},
    {"ms a 1 O" X32 "\r\nx\r\nmn\r\n", OPAQUE " +3 | mn"},
    /* which error wins */
    {"ms a 1 Fx Tx\r\nx\r\nmn\r\n", BAD_TOKEN " +3 | mn"},
    {"ms a 1 Tx Fx\r\nx\r\nmn\r\n", BAD_TOKEN " +3 | mn"},
    {"ms a 1 Tx v v\r\nx\r\nmn\r\n", DUP " +3 | mn"},
    {"ms a 1 Tx MXX\r\nx\r\nmn\r\n", MLEN " +3 | mn"},
    {"ms a 1 MXX Tx\r\nx\r\nmn\r\n", BAD_TOKEN " +3 | mn"},
    {"ms a 1 MX Tx\r\nx\r\nmn\r\n", BAD_TOKEN " +3 | mn"},
    {"ms a 1 MX O" X32 "xxxxxxxx\r\nx\r\nmn\r\n", MS_MODE " +3 | mn"},
    /* the block itself; q does not silence it */
    {"ms a 1\r\nxyz\r\nmn\r\n", BAD_CHUNK " | ERROR | mn"},
    {"ms a 1 q\r\nxyz\r\nmn\r\n", BAD_CHUNK " | ERROR | mn"},
    /* modes: HD NS HD HD HD */
    {"ms a 1 MS\r\nx\r\nms a 1 ME\r\ny\r\nms a 1 MA\r\ny\r\n"
     "ms a 1 MP\r\nz\r\nms a 1 MR\r\nw\r\n",
     "ms a M =x | ms a M =y | ms a M =y | ms a M =z | ms a M =w"},
    {"ms a 1 N5\r\nx\r\nmn\r\n", "ms a N =x | mn"},
    {"ms a 1 s t f h l u R5\r\nx\r\n", "ms a stfhluR =x"},
    {"ms a 1 Pp Ll\r\nx\r\n", "ms a PL =x"},
    /* <datalen> keeps its low 32 bits, like set's <bytes> */
    {"ms a 4294967297\r\nx\r\nmn\r\n", "ms a =x | mn"},
    {"ms a 01\r\nx\r\nmn\r\n", "ms a =x | mn"},
    {"ms a +1\r\nx\r\nmn\r\n", "ms a =x | mn"},
    {"ms " B63 "\r\nx\r\nmn\r\n", BAD_FORMAT " | ERROR | mn"},
    {"ms YWJj 1 b k\r\nx\r\n", "ms abc bk =x"},
    {"ms a 3\r\nab", "AGAIN"},
};

/* Too large (value_max = 4 stands for -I): swallowed, never silenced. */
static const struct tcase ms_large_cases[] = {
    {"ms a 5\r\nhello\r\nmn\r\n", TOO_LARGE " +7 | mn"},
    {"ms a 5 q\r\nhello\r\nmn\r\n", TOO_LARGE " +7 | mn"},
    {"ms a 5 MA\r\nhello\r\nmn\r\n", TOO_LARGE " +7 | mn"},
    /* flag errors come first */
    {"ms a 5 x\r\nhello\r\nmn\r\n", INVALID " +7 | mn"},
    {"ms a 4\r\nhell\r\nmn\r\n", "ms a =hell | mn"},
};

/* ------------------------------------------------------------------ */
/* md, ma, me, mn                                                     */

static const struct tcase md_ma_me_cases[] = {
    /* HD, HD, NF */
    {"md a\r\nmd a\r\n", "md a | md a"},
    {"md\r\n", "ERROR"},
    {"md " K251 "\r\n", BAD_FORMAT},
    {"md zz q\r\nmn\r\n", "md zz q nr | mn"},
    {"md zz k O5 q\r\nmn\r\n", "md zz kOq nr | mn"},
    {"md zz I T30 C5\r\n", "md zz ITC"},
    /* every flag error reads the same on md */
    {"md zz x\r\n", INV_OR_DUP},
    {"md zz v v\r\n", INV_OR_DUP},
    {"md zz Tx\r\n", INV_OR_DUP},
    {"md zz Cx\r\n", INV_OR_DUP},
    {"md zz MXX\r\n", INV_OR_DUP},
    {"md zz E5\r\n", INV_OR_DUP},
    {"md zz C5 I T30 b\r\n", INV_OR_DUP},
    {"md zz " P16 " P16\r\n", INV_OR_DUP},
    {"md zz " P16 " P16 P17\r\n", MANY},
    {"md zz O" X32 "\r\n", OPAQUE},
    /* md takes any mode byte */
    {"md zz MX\r\n", "md zz M"},
    {"md YWJj b k\r\n", "md abc bk"},
    /* ma */
    {"ma\r\n", "ERROR"},
    {"ma zz\r\n", "ma zz"},
    {"ma zz q\r\nmn\r\n", "ma zz q nr | mn"},
    {"ma zz N0 J10 v\r\n", "ma zz NJv"},
    {"ma zz MD D3 v t c k O1\r\n", "ma zz MDvtckO"},
    {"ma zz M- v\r\n", "ma zz Mv"},
    {"ma zz M+ v\r\n", "ma zz Mv"},
    {"ma zz MI\r\n", "ma zz M"},
    {"ma zz Mi v\r\n", MA_MODE},
    {"ma zz MX v\r\n", MA_MODE},
    {"ma zz MX q\r\nmn\r\n", MA_MODE " | mn"},
    {"ma zz MXX v\r\n", INV_OR_DUP},
    {"ma zz Dx\r\n", INV_OR_DUP},
    {"ma zz D-1\r\n", INV_OR_DUP},
    {"ma zz D18446744073709551616\r\n", INV_OR_DUP},
    {"ma zz Jx\r\n", INV_OR_DUP},
    {"ma zz Nx\r\n", INV_OR_DUP},
    {"ma zz x\r\n", INV_OR_DUP},
    {"ma zz q x\r\nmn\r\n", INV_OR_DUP " | mn"},
    {"ma zz O" X32 "\r\n", OPAQUE},
    {"ma zz O" X32 " q\r\nmn\r\n", OPAQUE " | mn"},
    {"ma " K251 "\r\n", BAD_FORMAT},
    {"ma zz C5\r\n", "ma zz C"},
    {"ma zz E5\r\n", INV_OR_DUP},
    {"ma bnVt b N0 k v\r\n", "ma num bNkv"},
    /* me <key> [b]: anything after is ignored */
    {"me zz\r\n", "me zz"},
    {"me zz x y z\r\n", "me zz"},
    {"me\r\n", BAD_FORMAT},
    {"me " K251 "\r\n", BAD_FORMAT},
    {"me zz b\r\n", BAD_FORMAT},
    {"me !!!! b\r\n", BAD_FORMAT},
    {"me YWJj b\r\n", "me abc"},
    {"me YWJj bb\r\n", "me YWJj"},
    /* mn: always MN */
    {"mn\r\n", "mn"},
    {"mn q k v\r\n", "mn"},
};

static void
test_mg(void)
{
    TABLE("mg", mg_cases);
}

static void
test_ms(void)
{
    TABLE("ms", ms_cases);
    TABLE_LIMIT("ms too large", ms_large_cases, 4);
}

static void
test_md_ma_me(void)
{
    TABLE("md ma me", md_ma_me_cases);
}

/* ------------------------------------------------------------------ */
/* Fields                                                             */

static void
test_mg_fields(void)
{
    struct proto_cmd c;
    size_t used;

    CU_ASSERT_EQUAL(
        parse1(&c, "mg key s v Oabc T-5 N30 R4294967297 q k\r\n", &used),
        PROTO_OK);
    CU_ASSERT_EQUAL(used, 41);
    CU_ASSERT_EQUAL(c.type, PROTO_CMD_MG);
    CU_ASSERT(c.nkey == 3 && memcmp(c.key, "key", 3) == 0);
    CU_ASSERT_EQUAL(c.meta.nflags, 8);
    CU_ASSERT_EQUAL(memcmp(c.meta.order, "svOTNRqk", 8), 0);
    CU_ASSERT(proto_meta_has(&c, 'v'));
    CU_ASSERT(proto_meta_has(&c, 'O'));
    CU_ASSERT_FALSE(proto_meta_has(&c, 'c'));
    CU_ASSERT_FALSE(proto_meta_has(&c, 'b'));
    CU_ASSERT(c.meta.nopaque == 3 && memcmp(c.meta.opaque, "abc", 3) == 0);
    CU_ASSERT_EQUAL(c.meta.ttl, -5);
    CU_ASSERT_EQUAL(c.exptime, -5);
    CU_ASSERT_EQUAL(c.meta.vivify_ttl, 30);
    /* R keeps the low 32 bits like every exptime */
    CU_ASSERT_EQUAL(c.meta.recache_ttl, 1);
    CU_ASSERT(c.meta.quiet);
    CU_ASSERT(c.noreply);
    CU_ASSERT_FALSE(c.meta.base64);
    CU_ASSERT_EQUAL(c.meta.delta, 1);

    /* a too-long opaque is an error, but the command is fully parsed:
     * memcached fails it only while answering */
    CU_ASSERT_EQUAL(parse1(&c, "mg k T9 O" X32 "\r\n", NULL), PROTO_EINVAL);
    CU_ASSERT_EQUAL(c.err, PROTO_ERR_META_OPAQUE);
    CU_ASSERT_EQUAL(c.meta.ttl, 9);
    CU_ASSERT_EQUAL(c.meta.nopaque, 32);
    CU_ASSERT_FALSE(c.noreply);
}

static void
test_ms_fields(void)
{
    struct proto_cmd c;

    CU_ASSERT_EQUAL(parse1(&c,
                           "ms k 3 F4294967297 T-1 C18446744073709551615 I "
                           "MA q c\r\nabc\r\n",
                           NULL),
                    PROTO_OK);
    CU_ASSERT_EQUAL(c.type, PROTO_CMD_MS);
    CU_ASSERT(c.nvalue == 3 && memcmp(c.value, "abc", 3) == 0);
    CU_ASSERT_EQUAL(c.meta.client_flags, 1);
    CU_ASSERT_EQUAL(c.flags, 1);
    CU_ASSERT_EQUAL(c.meta.ttl, -1);
    CU_ASSERT_EQUAL(c.exptime, -1);
    CU_ASSERT(c.meta.has_cas);
    CU_ASSERT_EQUAL(c.meta.cas, UINT64_MAX);
    CU_ASSERT_EQUAL(c.cas, UINT64_MAX);
    CU_ASSERT(c.meta.invalidate);
    CU_ASSERT_EQUAL(c.meta.mode, 'A');
    CU_ASSERT_EQUAL(c.meta.store_mode, PROTO_STORE_APPEND);
    CU_ASSERT_EQUAL(c.store_mode, PROTO_STORE_APPEND);
    CU_ASSERT(c.noreply);

    /* C0 is a CAS of 0, given */
    CU_ASSERT_EQUAL(parse1(&c, "ms k 1 C0\r\nx\r\n", NULL), PROTO_OK);
    CU_ASSERT(c.meta.has_cas);
    CU_ASSERT_EQUAL(c.meta.cas, 0);
    CU_ASSERT_EQUAL(parse1(&c, "ms k 1\r\nx\r\n", NULL), PROTO_OK);
    CU_ASSERT_FALSE(c.meta.has_cas);
    CU_ASSERT_EQUAL(c.store_mode, PROTO_STORE_SET);
    CU_ASSERT_FALSE(c.noreply);
    /* F wraps like set's flags: -18446744073709551615 is 1 */
    CU_ASSERT_EQUAL(parse1(&c, "ms k 1 F-18446744073709551615\r\nx\r\n",
                           NULL),
                    PROTO_OK);
    CU_ASSERT_EQUAL(c.meta.client_flags, 1);
    CU_ASSERT_EQUAL(parse1(&c, "ms k 1 ME\r\nx\r\n", NULL), PROTO_OK);
    CU_ASSERT_EQUAL(c.store_mode, PROTO_STORE_ADD);
    CU_ASSERT_EQUAL(parse1(&c, "ms k 1 MR\r\nx\r\n", NULL), PROTO_OK);
    CU_ASSERT_EQUAL(c.store_mode, PROTO_STORE_REPLACE);
    CU_ASSERT_EQUAL(parse1(&c, "ms k 1 MP\r\nx\r\n", NULL), PROTO_OK);
    CU_ASSERT_EQUAL(c.store_mode, PROTO_STORE_PREPEND);
    CU_ASSERT_EQUAL(parse1(&c, "ms k 1 MS\r\nx\r\n", NULL), PROTO_OK);
    CU_ASSERT_EQUAL(c.store_mode, PROTO_STORE_SET);
    /* AGAIN knows the size once the line is in */
    CU_ASSERT_EQUAL(parse1(&c, "ms k 100 T5\r\n", NULL), PROTO_AGAIN);
    CU_ASSERT_EQUAL(c.need, 13 + 100 + 2);
}

static void
test_md_ma_fields(void)
{
    struct proto_cmd c;

    CU_ASSERT_EQUAL(parse1(&c, "md k I T30 C77 q\r\n", NULL), PROTO_OK);
    CU_ASSERT_EQUAL(c.type, PROTO_CMD_MD);
    CU_ASSERT(c.meta.invalidate);
    CU_ASSERT_EQUAL(c.meta.ttl, 30);
    CU_ASSERT(c.meta.has_cas && c.meta.cas == 77);
    CU_ASSERT(c.noreply);

    CU_ASSERT_EQUAL(parse1(&c, "ma k\r\n", NULL), PROTO_OK);
    CU_ASSERT_EQUAL(c.type, PROTO_CMD_MA);
    CU_ASSERT_EQUAL(c.meta.delta, 1);
    CU_ASSERT_EQUAL(c.delta, 1);
    CU_ASSERT_EQUAL(c.meta.initial, 0);
    CU_ASSERT_FALSE(c.meta.decr);
    CU_ASSERT_EQUAL(
        parse1(&c, "ma k MD D18446744073709551615 J42 N-1 T9 v\r\n", NULL),
        PROTO_OK);
    CU_ASSERT(c.meta.decr);
    CU_ASSERT_EQUAL(c.meta.delta, UINT64_MAX);
    CU_ASSERT_EQUAL(c.delta, UINT64_MAX);
    CU_ASSERT_EQUAL(c.meta.initial, 42);
    CU_ASSERT_EQUAL(c.meta.vivify_ttl, -1);
    CU_ASSERT_EQUAL(c.meta.ttl, 9);
    CU_ASSERT_EQUAL(parse1(&c, "ma k M-\r\n", NULL), PROTO_OK);
    CU_ASSERT(c.meta.decr);
    CU_ASSERT_EQUAL(parse1(&c, "ma k M+\r\n", NULL), PROTO_OK);
    CU_ASSERT_FALSE(c.meta.decr);
    CU_ASSERT_EQUAL(parse1(&c, "ma k MI\r\n", NULL), PROTO_OK);
    CU_ASSERT_FALSE(c.meta.decr);
    /* memcached takes this "negative" delta as 1 */
    CU_ASSERT_EQUAL(parse1(&c, "ma k D-18446744073709551615\r\n", NULL),
                    PROTO_OK);
    CU_ASSERT_EQUAL(c.meta.delta, 1);
}

static void
test_base64_keys(void)
{
    struct proto_cmd c;

    CU_ASSERT_EQUAL(parse1(&c, "mg AAEC/w== b k\r\n", NULL), PROTO_OK);
    CU_ASSERT(c.meta.base64);
    CU_ASSERT_EQUAL(c.nkey, 4);
    CU_ASSERT_EQUAL(memcmp(c.key, "\x00\x01\x02\xff", 4), 0);
    CU_ASSERT_PTR_EQUAL(c.key, c.key_buf);
    /* a key that decodes to spaces and newlines is fine: it is binary */
    CU_ASSERT_EQUAL(parse1(&c, "md IAoN b\r\n", NULL), PROTO_OK);
    CU_ASSERT(c.nkey == 3 && memcmp(c.key, " \n\r", 3) == 0);
    /* the longest encoded key, 248 bytes, decodes to 186 */
    CU_ASSERT_EQUAL(parse1(&c, "ms " B63 "\r\nx\r\n", NULL), PROTO_EINVAL);
    {
        char line[400];
        snprintf(line, sizeof(line), "ms %.248s 1 b\r\nx\r\n", B63);
        CU_ASSERT_EQUAL(parse1(&c, line, NULL), PROTO_OK);
        CU_ASSERT_EQUAL(c.nkey, 186);
    }
    CU_ASSERT_EQUAL(parse1(&c, "me AAEC/w== b\r\n", NULL), PROTO_OK);
    CU_ASSERT_EQUAL(c.nkey, 4);
    CU_ASSERT(c.meta.base64);
}

/*
 * memcached's decoder, observed through "ms <key> 1 b k" (the reply's k
 * token is the decoded key encoded again): skip bytes outside the
 * alphabet, need whole groups of four, stop after the first group that
 * holds '='.
 */
static void
test_base64_decode(void)
{
    static const struct {
        const char *in;
        const char *out; /* NULL: an error */
        size_t nout;
    } rows[] = {
        {"YWJj", "abc", 3},
        {"YWI=", "ab", 2},
        {"YQ==", "a", 1},
        {"YWJjZA==", "abcd", 4},
        {"YWJjZGVm", "abcdef", 6},
        {"Zm9vYmFy", "foobar", 6},
        {"AAAA", "\0\0\0", 3},
        {"////", "\xff\xff\xff", 3},
        /* '=' inside a group counts as padding wherever it is */
        {"YW=j", "a`", 2},
        {"Zm9=YmFy", "fo", 2},
        /* bits left over in the last byte are dropped */
        {"YWJ=", "ab", 2},
        {"YR==", "a", 1},
        /* stops after the first padded group */
        {"YQ==YQ==", "a", 1},
        /* bytes outside the alphabet are skipped */
        {"YWJj!!!!", "abc", 3},
        {"Y!WJj", "abc", 3},
        {"YW\rJj", "abc", 3},
        {"-_-_", NULL, 0},
        {"YWI", NULL, 0},
        {"YQ=", NULL, 0},
        {"YQ", NULL, 0},
        {"Y", NULL, 0},
        {"YWJjZA", NULL, 0},
        {"YWJjZA=", NULL, 0},
        {"YWJjZ", NULL, 0},
        {"YWJj====", NULL, 0},
        {"====", NULL, 0},
        {"A===", NULL, 0},
        {"", NULL, 0},
    };
    char out[64];

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        size_t n = proto_base64_decode(rows[i].in, strlen(rows[i].in), out,
                                       sizeof(out));
        if (rows[i].out == NULL) {
            CU_ASSERT_EQUAL(n, 0);
        } else {
            CU_ASSERT_EQUAL(n, rows[i].nout);
            CU_ASSERT_EQUAL(memcmp(out, rows[i].out, rows[i].nout), 0);
        }
    }
    /* the output must fit whole groups, padding or not: 8 characters
     * need 6 bytes, and "YQ==" needs 3 for its 1 */
    CU_ASSERT_EQUAL(proto_base64_decode("YWJjZGVm", 8, out, 5), 0);
    CU_ASSERT_EQUAL(proto_base64_decode("YWJjZGVm", 8, out, 6), 6);
    CU_ASSERT_EQUAL(proto_base64_decode("YQ==", 4, out, 2), 0);
    CU_ASSERT_EQUAL(proto_base64_decode("YQ==", 4, out, 3), 1);
}

static void
test_base64_round_trip(void)
{
    /* dec: the decoder wants room for whole groups of three */
    char src[200], enc[280], dec[201];
    unsigned seed = 12345;

    for (size_t n = 1; n < sizeof(src); n++) {
        size_t ne, nd;

        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            src[i] = (char)(seed >> 16);
        }
        ne = proto_base64_encode(src, n, enc, sizeof(enc));
        CU_ASSERT_EQUAL(ne, (n + 2) / 3 * 4);
        nd = proto_base64_decode(enc, ne, dec, sizeof(dec));
        CU_ASSERT_EQUAL(nd, n);
        CU_ASSERT_EQUAL(memcmp(src, dec, n), 0);
    }
    CU_ASSERT_EQUAL(proto_base64_encode("abc", 3, enc, 3), 0);
    CU_ASSERT_EQUAL(proto_base64_encode("", 0, enc, 0), 0);
    CU_ASSERT_EQUAL(proto_base64_encode("ab", 2, enc, 4), 4);
    CU_ASSERT_EQUAL(memcmp(enc, "YWI=", 4), 0);
    CU_ASSERT_EQUAL(proto_base64_encode("a", 1, enc, 4), 4);
    CU_ASSERT_EQUAL(memcmp(enc, "YQ==", 4), 0);
}

static const struct cu_test meta_tests[] = {
    CU_TEST(test_mg),          CU_TEST(test_ms),
    CU_TEST(test_md_ma_me),    CU_TEST(test_mg_fields),
    CU_TEST(test_ms_fields),   CU_TEST(test_md_ma_fields),
    CU_TEST(test_base64_keys), CU_TEST(test_base64_decode),
    CU_TEST(test_base64_round_trip), CU_END};

CU_MAIN({"meta", meta_tests, NULL, NULL})
