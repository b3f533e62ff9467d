/*
 * test_ext.c - Corral's protocol extensions (server/proto/ext.c): tagged
 * stores, the G flag of ms, the A flag of mg, the invalidation commands, "watch
 * invalidations" and its filters, key tags, URI encoding and the
 * invalidation stream's lines.
 *
 * The table rows use the notation of test_proto_harness.h (an OK event
 * shows the command, its key, " [tags]" and " =value"; an error shows its
 * line and " +N" for a swallowed data block) and are replayed split at
 * every byte.  The stream lines are checked by composing, parsing back,
 * and against literal lines.
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
#define T250 K250
#define BAD_FORMAT "CLIENT_ERROR bad command line format"
#define BAD_TAGS "CLIENT_ERROR bad tags"
#define BAD_FILTER "CLIENT_ERROR bad watch filter"
#define MIXED "CLIENT_ERROR invalidations cannot be watched with other streams"

/* ------------------------------------------------------------------ */
/* Tagged stores                                                      */

static const struct tcase tstore_cases[] = {
    {"tset k 0 0 1 a,b\r\nx\r\n", "tset k [a,b] =x"},
    {"tadd k 0 0 1 a noreply\r\nx\r\n", "tadd k [a] =x nr"},
    {"treplace k 5 10 2 user:1\r\nxy\r\n", "treplace k [user:1] =xy"},
    {"tcas k 0 0 1 77 t\r\nx\r\n", "tcas k [t] =x"},
    {"tset k 0 0 0 a,b,c,d,e,f,g,h\r\n\r\nmn\r\n",
     "tset k [a,b,c,d,e,f,g,h] = | mn"},
    /* too many tags, an empty one, a bad byte: the block is swallowed */
    {"tset k 0 0 1 a,b,c,d,e,f,g,h,i\r\nx\r\nmn\r\n", BAD_TAGS " +3 | mn"},
    {"tset k 0 0 1 a,,b\r\nx\r\nmn\r\n", BAD_TAGS " +3 | mn"},
    {"tset k 0 0 1 a,\r\nx\r\nmn\r\n", BAD_TAGS " +3 | mn"},
    {"tset k 0 0 1 ,a\r\nx\r\nmn\r\n", BAD_TAGS " +3 | mn"},
    {"tset k 0 0 1 a\tb\r\nx\r\nmn\r\n", BAD_TAGS " +3 | mn"},
    {"tset k 0 0 1 " T250 "k\r\nx\r\nmn\r\n", BAD_TAGS " +3 | mn"},
    {"tset k 0 0 1 " T250 "\r\nx\r\nmn\r\n", "tset k [" T250 "] =x | mn"},
    /* the word count: ERROR, and the block is read as a command */
    {"tset k 0 0 1\r\nx\r\nmn\r\n", "ERROR | ERROR | mn"},
    {"tcas k 0 0 1 a\r\nx\r\nmn\r\n", "ERROR | ERROR | mn"},
    /* a bad length: nothing to swallow */
    {"tset k 0 0 x a\r\nmn\r\n", BAD_FORMAT " | mn"},
    {"tset k 0 0 -1 a\r\nmn\r\n", BAD_FORMAT " | mn"},
    /* a bad number, key or trailing word once the length is known */
    {"tset k x 0 1 a\r\nx\r\nmn\r\n", BAD_FORMAT " +3 | mn"},
    {"tcas k 0 0 1 x a\r\nx\r\nmn\r\n", BAD_FORMAT " +3 | mn"},
    {"tset " K250 "k 0 0 1 a\r\nx\r\nmn\r\n", BAD_FORMAT " +3 | mn"},
    {"tset k 0 0 1 a norply\r\nx\r\nmn\r\n", BAD_FORMAT " +3 | mn"},
    /* the block's own errors */
    {"tset k 0 0 1 a\r\nxyz\r\nmn\r\n",
     "CLIENT_ERROR bad data chunk | ERROR | mn"},
};

static void
test_tagged_stores(void)
{
    TABLE("tstore", tstore_cases);
}

static void
test_tagged_store_fields(void)
{
    struct proto_cmd cmd;
    size_t used;

    CU_ASSERT_EQUAL(parse1(&cmd, "tcas key 7 -1 3 123 a,b noreply\r\nabc\r\n",
                           &used),
                    PROTO_OK);
    CU_ASSERT_EQUAL(cmd.type, PROTO_CMD_TCAS);
    CU_ASSERT_EQUAL(cmd.store_mode, PROTO_STORE_CAS);
    CU_ASSERT_EQUAL(cmd.flags, 7);
    CU_ASSERT_EQUAL(cmd.exptime, -1);
    CU_ASSERT_EQUAL(cmd.cas, 123);
    CU_ASSERT_EQUAL(cmd.ntags, 2);
    CU_ASSERT_TRUE(cmd.noreply);
    CU_ASSERT_EQUAL(used, strlen("tcas key 7 -1 3 123 a,b noreply\r\n") + 5);
    CU_ASSERT_EQUAL(parse1(&cmd, "tadd k 0 0 1 x\r\n1\r\n", NULL), PROTO_OK);
    CU_ASSERT_EQUAL(cmd.store_mode, PROTO_STORE_ADD);
    CU_ASSERT_EQUAL(parse1(&cmd, "treplace k 0 0 1 x\r\n1\r\n", NULL),
                    PROTO_OK);
    CU_ASSERT_EQUAL(cmd.store_mode, PROTO_STORE_REPLACE);
    CU_ASSERT_EQUAL(parse1(&cmd, "tset k 0 0 1 x\r\n1\r\n", NULL), PROTO_OK);
    CU_ASSERT_EQUAL(cmd.store_mode, PROTO_STORE_SET);
}

static const struct tcase ms_tag_cases[] = {
    {"ms k 2 Ga,b T30\r\nhi\r\n", "ms k GT [a,b] =hi"},
    {"ms k 2 T30 Guser:1 q\r\nhi\r\n", "ms k TGq [user:1] =hi nr"},
    {"ms k 2 G\r\nhi\r\nmn\r\n", BAD_TAGS " +4 | mn"},
    {"ms k 2 Ga,,b\r\nhi\r\nmn\r\n", BAD_TAGS " +4 | mn"},
    {"ms k 2 Ga,b,c,d,e,f,g,h,i\r\nhi\r\nmn\r\n", BAD_TAGS " +4 | mn"},
    {"ms k 2 Ga Gb\r\nhi\r\nmn\r\n",
     "CLIENT_ERROR duplicate flag +4 | mn"},
    /* every meta command reads the flag, as memcached reads flags */
    {"mg k Ga v\r\n", "mg k Gv [a]"},
    {"md k Ga\r\n", "md k G [a]"},
};

static void
test_ms_tags(void)
{
    TABLE("ms G", ms_tag_cases);
}

/* ------------------------------------------------------------------ */
/* mg A: early refresh                                                */

#define BAD_TOKEN "CLIENT_ERROR bad token in command line format"

static const struct tcase early_cases[] = {
    {"mg k A\r\n", "mg k A A=1000"},
    {"mg k v A t\r\n", "mg k vAt A=1000"},
    {"mg k A2 v\r\n", "mg k Av A=2000"},
    {"mg k A0.5 v\r\n", "mg k Av A=500"},
    {"mg k A0.125 N30 R5\r\n", "mg k ANR A=125"},
    {"mg k A1000\r\n", "mg k A A=1000000"},
    {"mg k A1000.000\r\n", "mg k A A=1000000"},
    {"mg k A.5\r\n", BAD_TOKEN},
    {"mg k A1.\r\n", BAD_TOKEN},
    {"mg k A0\r\n", BAD_TOKEN},
    {"mg k A0.000\r\n", BAD_TOKEN},
    {"mg k A1000.001\r\n", BAD_TOKEN},
    {"mg k A1001\r\n", BAD_TOKEN},
    {"mg k A0.0001\r\n", BAD_TOKEN},
    {"mg k A-1\r\n", BAD_TOKEN},
    {"mg k A1x\r\n", BAD_TOKEN},
    {"mg k A99999999999999999999\r\n", BAD_TOKEN},
    {"mg k A A\r\n", "CLIENT_ERROR duplicate flag"},
    {"mg k Ax q\r\nmn\r\n", BAD_TOKEN " | mn"},
    /* a bad token does not stop the scan (as memcached's T, N, R) */
    {"mg k Ax x\r\n", "CLIENT_ERROR invalid flag"},
    /* read by every meta command, used by mg only */
    {"md k A\r\n", "md k A A=1000"},
    {"ms k 1 A3\r\nx\r\n", "ms k A A=3000 =x"},
    {"ms k 1 Ax\r\nx\r\nmn\r\n", BAD_TOKEN " +3 | mn"},
};

static void
test_mg_early(void)
{
    TABLE("mg A", early_cases);
}

/* ------------------------------------------------------------------ */
/* Invalidation commands                                              */

static const struct tcase invalidate_cases[] = {
    {"invalidate_tag user:1\r\n", "invalidate_tag [user:1]"},
    {"invalidate_tag user:1 noreply\r\n", "invalidate_tag [user:1] nr"},
    {"invalidate_prefix page:\r\n", "invalidate_prefix page:"},
    {"invalidate_prefix page: noreply\r\n", "invalidate_prefix page: nr"},
    {"invalidate_tag\r\n", "ERROR"},
    {"invalidate_tag a b c\r\n", "ERROR"},
    {"invalidate_prefix\r\n", "ERROR"},
    {"invalidate_tag a b\r\n", BAD_FORMAT},
    {"invalidate_tag a,b\r\n", BAD_FORMAT},
    {"invalidate_tag " T250 "x\r\n", BAD_FORMAT},
    {"invalidate_prefix " K250 "\r\n", "invalidate_prefix " K250},
    {"invalidate_prefix " K250 "k\r\n", BAD_FORMAT},
    {"invalidate_prefix a b\r\n", BAD_FORMAT},
};

static void
test_invalidate(void)
{
    TABLE("invalidate", invalidate_cases);
}

/* ------------------------------------------------------------------ */
/* watch invalidations                                                */

static const struct tcase watch_cases[] = {
    {"watch invalidations\r\n", "watch invalidations"},
    {"watch invalidations prefix=a%20b tag=t origin=local\r\n",
     "watch invalidations prefix=a%20b tag=t origin=local"},
    {"watch invalidations since=5 node=00ff\r\n",
     "watch invalidations since=5 node=00ff"},
    {"watch invalidations since=18446744073709551615\r\n",
     "watch invalidations since=18446744073709551615"},
    {"watch invalidations heartbeat=1\r\n", "watch invalidations heartbeat=1"},
    {"watch invalidations heartbeat=3600\r\n",
     "watch invalidations heartbeat=3600"},
    {"watch invalidations mutations\r\n", MIXED},
    {"watch fetchers invalidations\r\n", MIXED},
    {"watch invalidations foo\r\n", BAD_FILTER},
    {"watch invalidations noreply\r\n", BAD_FILTER},
    {"watch invalidations since=0\r\n", BAD_FILTER},
    {"watch invalidations since=-1\r\n", BAD_FILTER},
    {"watch invalidations since=18446744073709551616\r\n", BAD_FILTER},
    {"watch invalidations node=12\r\n", BAD_FILTER},
    {"watch invalidations since=1 node=12345678901234567\r\n", BAD_FILTER},
    {"watch invalidations since=1 node=xyz\r\n", BAD_FILTER},
    {"watch invalidations prefix=\r\n", BAD_FILTER},
    {"watch invalidations prefix=%2\r\n", BAD_FILTER},
    {"watch invalidations tag=%zz\r\n", BAD_FILTER},
    {"watch invalidations origin=remote\r\n", BAD_FILTER},
    {"watch invalidations heartbeat=0\r\n", BAD_FILTER},
    {"watch invalidations heartbeat=3601\r\n", BAD_FILTER},
    {"watch invalidations heartbeat=x\r\n", BAD_FILTER},
    {"watch invalidations heartbeat=\r\n", BAD_FILTER},
    /* 22 words after watch: memcached's tokenizer would drop some */
    {"watch invalidations a=1 a=1 a=1 a=1 a=1 a=1 a=1 a=1 a=1 a=1 a=1 "
     "a=1 a=1 a=1 a=1 a=1 a=1 a=1 a=1 a=1 a=1\r\n",
     BAD_FILTER},
    /* the other streams keep memcached's parse */
    {"watch fetchers mutations\r\n", "watch fetchers mutations"},
    {"watch foo\r\n", "ERROR"},
};

static void
test_watch(void)
{
    TABLE("watch", watch_cases);
}

static void
test_watch_fields(void)
{
    struct proto_cmd cmd;
    struct proto_iter it;
    proto_watch_filter_t kind;
    char buf[PROTO_KEY_MAX];
    size_t n;
    int count = 0;

    CU_ASSERT_EQUAL(parse1(&cmd,
                           "watch invalidations prefix=a%20b tag=user%3A1 "
                           "origin=local since=42 node=AbC heartbeat=2\r\n",
                           NULL),
                    PROTO_OK);
    CU_ASSERT_EQUAL(cmd.watch, PROTO_WATCH(INVALIDATIONS));
    CU_ASSERT_EQUAL(cmd.heartbeat, 2);
    CU_ASSERT_EQUAL(cmd.since, 42);
    CU_ASSERT_EQUAL(cmd.node, 0xabc);
    proto_args_begin(&it, &cmd);
    while (proto_watch_filter_next(&it, &kind, buf, sizeof(buf), &n)) {
        switch (count++) {
        case 0:
            CU_ASSERT_EQUAL(kind, PROTO_WF_PREFIX);
            CU_ASSERT_TRUE(n == 3 && memcmp(buf, "a b", 3) == 0);
            break;
        case 1:
            CU_ASSERT_EQUAL(kind, PROTO_WF_TAG);
            CU_ASSERT_TRUE(n == 6 && memcmp(buf, "user:1", 6) == 0);
            break;
        case 2:
            CU_ASSERT_EQUAL(kind, PROTO_WF_LOCAL);
            break;
        default:
            CU_FAIL("too many filters");
        }
    }
    CU_ASSERT_EQUAL(count, 3);
    CU_ASSERT_EQUAL(parse1(&cmd, "watch invalidations\r\n", NULL), PROTO_OK);
    CU_ASSERT_EQUAL(cmd.since, 0);
    CU_ASSERT_EQUAL(cmd.node, 0);
    CU_ASSERT_EQUAL(cmd.heartbeat, 0);
}

/* ------------------------------------------------------------------ */
/* Tags, key tags, URI                                                */

static void
test_tag_lists(void)
{
    struct proto_iter it;
    const char *t;
    size_t n;
    unsigned count = 0;

    CU_ASSERT_TRUE(proto_tags_valid("a", 1, &count) && count == 1);
    CU_ASSERT_TRUE(proto_tags_valid("a,b,c", 5, &count) && count == 3);
    CU_ASSERT_TRUE(proto_tags_valid("\xc3\xa9", 2, NULL));
    CU_ASSERT_FALSE(proto_tags_valid("", 0, NULL));
    CU_ASSERT_FALSE(proto_tags_valid(",", 1, NULL));
    CU_ASSERT_FALSE(proto_tags_valid("a\x7f", 2, NULL));
    CU_ASSERT_FALSE(proto_tags_valid("a b", 3, NULL));
    proto_tags_list_begin(&it, "x,yy,zzz", 8);
    count = 0;
    while (proto_tag_next(&it, &t, &n)) {
        count++;
        CU_ASSERT_EQUAL(n, count);
    }
    CU_ASSERT_EQUAL(count, 3);
}

static void
test_key_tags(void)
{
    const char *l = NULL;
    size_t n = 0;

    CU_ASSERT_EQUAL(proto_key_tags("page:1#user:7,site", 18, '#', &l, &n), 2);
    CU_ASSERT_TRUE(n == 11 && memcmp(l, "user:7,site", 11) == 0);
    /* the last separator counts */
    CU_ASSERT_EQUAL(proto_key_tags("a#b#c", 5, '#', &l, &n), 1);
    CU_ASSERT_TRUE(n == 1 && l[0] == 'c');
    CU_ASSERT_EQUAL(proto_key_tags("plain", 5, '#', &l, &n), 0);
    CU_ASSERT_EQUAL(proto_key_tags("#tag", 4, '#', &l, &n), 0);
    CU_ASSERT_EQUAL(proto_key_tags("k#", 2, '#', &l, &n), 0);
    CU_ASSERT_EQUAL(proto_key_tags("k#a,,b", 6, '#', &l, &n), 0);
    CU_ASSERT_EQUAL(proto_key_tags("k|a", 3, '|', &l, &n), 1);
}

static void
test_uri(void)
{
    char enc[3 * 256], dec[256];
    char all[256];
    size_t n;

    n = proto_uri_encode("a b%\x01~._-Z9", 11, enc, sizeof(enc));
    CU_ASSERT_EQUAL(n, 17);
    CU_ASSERT_EQUAL(memcmp(enc, "a%20b%25%01~._-Z9", 17), 0);
    CU_ASSERT_EQUAL(proto_uri_encode("ab", 2, enc, 1), 0);
    CU_ASSERT_EQUAL(proto_uri_encode(" ", 1, enc, 2), 0);
    CU_ASSERT_EQUAL(proto_uri_decode("a%20b%2a", 8, dec, sizeof(dec)), 4);
    CU_ASSERT_EQUAL(memcmp(dec, "a b*", 4), 0);
    CU_ASSERT_EQUAL(proto_uri_decode("%2", 2, dec, sizeof(dec)), -1);
    CU_ASSERT_EQUAL(proto_uri_decode("%g0", 3, dec, sizeof(dec)), -1);
    CU_ASSERT_EQUAL(proto_uri_decode("abc", 3, dec, 2), -1);
    for (int i = 0; i < 256; i++) {
        all[i] = (char)i;
    }
    n = proto_uri_encode(all, 256, enc, sizeof(enc));
    CU_ASSERT_EQUAL(proto_uri_decode(enc, n, dec, sizeof(dec)), 256);
    CU_ASSERT_EQUAL(memcmp(all, dec, 256), 0);
}

/* ------------------------------------------------------------------ */
/* The stream                                                         */

static void
check_line(const struct proto_watch_event *ev, const char *want)
{
    char line[PROTO_WATCH_LINE_MAX], nb[PROTO_KEY_MAX];
    struct proto_watch_event back;
    size_t n = proto_compose_watch(line, sizeof(line), ev), used;

    CU_ASSERT_EQUAL(n, strlen(want));
    if (n != strlen(want) || memcmp(line, want, n) != 0) {
        printf("\n    want: %s    got:  %.*s", want, (int)n, line);
        CU_FAIL("line differs");
        return;
    }
    CU_ASSERT_EQUAL(proto_parse_watch_line(line, n, &back, nb, sizeof(nb),
                                           &used),
                    PROTO_OK);
    CU_ASSERT_EQUAL(used, n);
    CU_ASSERT_EQUAL(back.type, ev->type);
    CU_ASSERT_EQUAL(back.ts_us, ev->ts_us);
    CU_ASSERT_EQUAL(back.seq, ev->seq);
    CU_ASSERT_EQUAL(back.next, ev->next);
    CU_ASSERT_EQUAL(back.cas, ev->cas);
    CU_ASSERT_EQUAL(back.origin, ev->origin);
    CU_ASSERT_EQUAL(back.node, ev->node);
    CU_ASSERT_EQUAL(back.at, ev->at);
    CU_ASSERT_EQUAL(back.len, ev->len);
    if (ev->len > 0) {
        CU_ASSERT_EQUAL(memcmp(back.name, ev->name, ev->len), 0);
    }
}

static void
test_stream_lines(void)
{
    struct proto_watch_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.ts_us = 1700000000000001u;
    ev.type = PROTO_WEV_DELETE;
    ev.seq = 42;
    ev.cas = 7;
    ev.origin = 0xdeadbeef;
    ev.name = "a b\x01";
    ev.len = 4;
    check_line(&ev, "ts=1700000000.000001 seq=42 type=delete key=a%20b%01 "
                    "cas=7 origin=00000000deadbeef\n");
    ev.type = PROTO_WEV_OVERWRITE;
    check_line(&ev, "ts=1700000000.000001 seq=42 type=overwrite "
                    "key=a%20b%01 cas=7 origin=00000000deadbeef\n");
    ev.type = PROTO_WEV_STALE;
    check_line(&ev, "ts=1700000000.000001 seq=42 type=stale key=a%20b%01 "
                    "cas=7 origin=00000000deadbeef\n");
    ev.type = PROTO_WEV_TAG;
    ev.cas = 0;
    ev.name = "user:1";
    ev.len = 6;
    check_line(&ev, "ts=1700000000.000001 seq=42 type=tag tag=user%3A1 "
                    "origin=00000000deadbeef\n");
    ev.type = PROTO_WEV_PREFIX;
    check_line(&ev, "ts=1700000000.000001 seq=42 type=prefix "
                    "prefix=user%3A1 origin=00000000deadbeef\n");
    memset(&ev, 0, sizeof(ev));
    ev.ts_us = 5;
    ev.type = PROTO_WEV_FLUSH;
    ev.seq = 1;
    ev.at = 1800000000;
    ev.origin = UINT64_MAX;
    check_line(&ev, "ts=0.000005 seq=1 type=flush at=1800000000 "
                    "origin=ffffffffffffffff\n");
    memset(&ev, 0, sizeof(ev));
    ev.ts_us = 1;
    ev.type = PROTO_WEV_SYNC;
    ev.node = 0x0123456789abcdefu;
    ev.next = 9;
    check_line(&ev, "ts=0.000001 type=sync node=0123456789abcdef next=9\n");
    ev.at = 1800000000; /* a delayed flush still to come */
    check_line(&ev, "ts=0.000001 type=sync node=0123456789abcdef next=9 "
                    "at=1800000000\n");
    memset(&ev, 0, sizeof(ev));
    ev.type = PROTO_WEV_GAP;
    ev.seq = 3;
    ev.next = 10;
    check_line(&ev, "ts=0.000000 type=gap missed=3 next=10\n");
    memset(&ev, 0, sizeof(ev));
    ev.type = PROTO_WEV_LAGGED;
    ev.next = 11;
    check_line(&ev, "ts=0.000000 type=lagged next=11\n");
    ev.type = PROTO_WEV_SHUTDOWN;
    check_line(&ev, "ts=0.000000 type=shutdown next=11\n");
    ev.type = PROTO_WEV_PING;
    check_line(&ev, "ts=0.000000 type=ping next=11\n");
}

static void
test_stream_longest_line(void)
{
    char key[PROTO_KEY_MAX], line[PROTO_WATCH_LINE_MAX];
    struct proto_watch_event ev;

    memset(key, 0, sizeof(key));
    memset(&ev, 0, sizeof(ev));
    ev.type = PROTO_WEV_OVERWRITE;
    ev.ts_us = UINT64_MAX;
    ev.seq = UINT64_MAX;
    ev.cas = UINT64_MAX;
    ev.origin = UINT64_MAX;
    ev.name = key;
    ev.len = sizeof(key);
    CU_ASSERT_TRUE(proto_compose_watch(line, sizeof(line), &ev) > 0);
    CU_ASSERT_EQUAL(proto_compose_watch(line, 100, &ev), 0);
    ev.len = PROTO_KEY_MAX + 1;
    CU_ASSERT_EQUAL(proto_compose_watch(line, sizeof(line), &ev), 0);
    ev.type = PROTO_WEV_NONE;
    CU_ASSERT_EQUAL(proto_compose_watch(line, sizeof(line), &ev), 0);
}

static void
test_stream_parse(void)
{
    char nb[PROTO_KEY_MAX];
    struct proto_watch_event ev;
    size_t used;
    const char *s;

    /* whole lines only */
    s = "ts=1.5 type=sync node=ab next=3";
    CU_ASSERT_EQUAL(proto_parse_watch_line(s, strlen(s), &ev, nb, sizeof(nb),
                                           &used),
                    PROTO_AGAIN);
    CU_ASSERT_EQUAL(used, 0);
    /* memcached's answer to watch is not a stream line */
    s = "OK\r\n";
    CU_ASSERT_EQUAL(proto_parse_watch_line(s, strlen(s), &ev, nb, sizeof(nb),
                                           &used),
                    PROTO_EINVAL);
    CU_ASSERT_EQUAL(used, 4);
    /* unknown types and fields are tolerated */
    s = "ts=2 type=heartbeat color=blue\nrest";
    CU_ASSERT_EQUAL(proto_parse_watch_line(s, strlen(s), &ev, nb, sizeof(nb),
                                           &used),
                    PROTO_OK);
    CU_ASSERT_EQUAL(ev.type, PROTO_WEV_NONE);
    CU_ASSERT_EQUAL(used, strlen("ts=2 type=heartbeat color=blue\n"));
    /* malformed numbers and names */
    s = "ts=2 seq=x type=delete\n";
    CU_ASSERT_EQUAL(proto_parse_watch_line(s, strlen(s), &ev, nb, sizeof(nb),
                                           &used),
                    PROTO_EINVAL);
    s = "ts=2 seq=1 type=delete key=%4\n";
    CU_ASSERT_EQUAL(proto_parse_watch_line(s, strlen(s), &ev, nb, sizeof(nb),
                                           &used),
                    PROTO_EINVAL);
    /* a line without a time is not a stream line */
    s = "seq=1 type=delete key=a\n";
    CU_ASSERT_EQUAL(proto_parse_watch_line(s, strlen(s), &ev, nb, sizeof(nb),
                                           &used),
                    PROTO_EINVAL);
    /* a CR before the LF is tolerated, fractions are scaled */
    s = "ts=3.25 seq=1 type=flush at=-1 origin=1\r\n";
    CU_ASSERT_EQUAL(proto_parse_watch_line(s, strlen(s), &ev, nb, sizeof(nb),
                                           &used),
                    PROTO_OK);
    CU_ASSERT_EQUAL(ev.ts_us, 3250000);
    CU_ASSERT_EQUAL(ev.at, -1);
    CU_ASSERT_EQUAL(ev.type, PROTO_WEV_FLUSH);
    /* an endless line */
    {
        char big[PROTO_WATCH_LINE_MAX + 2];
        memset(big, 'a', sizeof(big));
        CU_ASSERT_EQUAL(proto_parse_watch_line(big, sizeof(big), &ev, nb,
                                               sizeof(nb), &used),
                        PROTO_ECLOSE);
    }
}

static const struct cu_test ext_tests[] = {
    CU_TEST(test_tagged_stores), CU_TEST(test_tagged_store_fields),
    CU_TEST(test_ms_tags),       CU_TEST(test_mg_early),
    CU_TEST(test_invalidate),
    CU_TEST(test_watch),         CU_TEST(test_watch_fields),
    CU_TEST(test_tag_lists),     CU_TEST(test_key_tags),
    CU_TEST(test_uri),           CU_TEST(test_stream_lines),
    CU_TEST(test_stream_longest_line), CU_TEST(test_stream_parse),
    CU_END};

CU_MAIN({"ext", ext_tests, NULL, NULL})
