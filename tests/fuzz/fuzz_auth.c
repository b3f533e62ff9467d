/*
 * fuzz_auth.c - libFuzzer target for auth_parse(), the framing corrald
 * applies to everything an unauthenticated client sends (-Y).  That
 * input comes from anyone who can connect, so the parser must hold its
 * contract on any bytes.
 *
 * Run it with scripts/fuzz.sh (it is one of the default targets), or
 * by hand in a clang-14 --enable-fuzz build directory:
 *
 *   make tests/fuzz/fuzz_auth
 *   tests/fuzz/fuzz_auth -max_total_time=1800 /tmp/auth-corpus \
 *       $srcdir/tests/fuzz/corpus/auth
 *
 * Ordinary builds replay tests/fuzz/corpus/auth in make check
 * (tests/fuzz/replay_auth).
 *
 * The input is a byte stream as a connection delivers it.  The target
 * runs exec.c's loop over it (consume, swallow what TOO_LONG says, stop
 * at AGAIN or CLOSE), each step on a heap copy of exactly the bytes
 * left, so reading past them trips ASan, and checks, aborting on a
 * violation:
 *   - consumed <= the bytes given; AGAIN and CLOSE consume nothing, and
 *     AGAIN's need, when known, exceeds them; every other step consumes;
 *   - CLOSE only past AUTH_LINE_MAX bytes without a newline;
 *   - TOKEN: user and password are non-empty, inside the buffer, hold no
 *     space, and the data block ends in "\r\n" at the consumed boundary;
 *   - TOO_LONG swallows more than AUTH_TOKEN_MAX + 2 bytes;
 *   - the same bytes give the same answer twice, and an AGAIN with a
 *     known need is answered without AGAIN once that many bytes are
 *     given (checked by padding the stream).
 */
#include "auth.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_auth: invariant failed: %s (%s:%d)\n",      \
                    #cond, __FILE__, __LINE__);                               \
            abort();                                                          \
        }                                                                     \
    } while (0)

static int
inside(const char *p, size_t n, const char *buf, size_t len)
{
    return p >= buf && n <= len && p + n <= buf + len;
}

/* One step on exactly @len bytes (a copy, freed before returning: the
 * frame's pointers are not to be used after); returns the step, and
 * *admin whether it is the token of user "admin". */
static enum auth_step
step(const uint8_t *at, size_t len, size_t *consumed, size_t *need,
     struct auth_frame *f, bool *admin)
{
    char *buf = malloc(len ? len : 1);
    enum auth_step s;
    size_t c2, n2;
    struct auth_frame f2;

    FUZZ_CHECK(buf != NULL);
    if (len > 0) {
        memcpy(buf, at, len);
    }
    s = auth_parse(buf, len, consumed, need, f);
    FUZZ_CHECK(*consumed <= len);
    switch (s) {
    case AUTH_AGAIN:
        FUZZ_CHECK(*consumed == 0);
        FUZZ_CHECK(*need == 0 || *need > len);
        break;
    case AUTH_CLOSE:
        FUZZ_CHECK(*consumed == 0);
        FUZZ_CHECK(len > AUTH_LINE_MAX);
        FUZZ_CHECK(memchr(buf, '\n', len) == NULL);
        break;
    case AUTH_TOKEN:
        FUZZ_CHECK(*consumed > 0);
        FUZZ_CHECK(f->nuser > 0 && f->npass > 0);
        FUZZ_CHECK(inside(f->user, f->nuser, buf, len));
        FUZZ_CHECK(inside(f->pass, f->npass, buf, len));
        FUZZ_CHECK(memchr(f->user, ' ', f->nuser) == NULL);
        FUZZ_CHECK(memchr(f->pass, ' ', f->npass) == NULL);
        FUZZ_CHECK(*consumed >= 2 && buf[*consumed - 2] == '\r' &&
                   buf[*consumed - 1] == '\n');
        break;
    case AUTH_TOO_LONG:
        FUZZ_CHECK(*consumed > 0 && buf[*consumed - 1] == '\n');
        FUZZ_CHECK(f->swallow > AUTH_TOKEN_MAX + 2);
        break;
    case AUTH_REFUSED:
    case AUTH_BAD_FORMAT:
    case AUTH_BAD_TERMINATION:
        FUZZ_CHECK(*consumed > 0);
        break;
    default:
        FUZZ_CHECK(!"an unknown step");
    }
    /* The same bytes, the same answer. */
    FUZZ_CHECK(auth_parse(buf, len, &c2, &n2, &f2) == s);
    FUZZ_CHECK(c2 == *consumed && n2 == *need);
    /* Enough bytes end an AGAIN that said how many it needs. */
    if (s == AUTH_AGAIN && *need > 0 && *need <= 4 * AUTH_TOKEN_MAX) {
        char *more = malloc(*need);
        FUZZ_CHECK(more != NULL);
        memcpy(more, buf, len);
        memset(more + len, '\n', *need - len);
        FUZZ_CHECK(auth_parse(more, *need, &c2, &n2, &f2) != AUTH_AGAIN);
        FUZZ_CHECK(c2 == *need);
        free(more);
    }
    *admin = s == AUTH_TOKEN && f->nuser == 5 &&
             memcmp(f->user, "admin", 5) == 0;
    free(buf);
    return s;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t pos = 0;

    while (pos <= size) {
        size_t consumed, need;
        struct auth_frame f;
        bool admin;
        enum auth_step s = step(data + pos, size - pos, &consumed, &need,
                                &f, &admin);

        if (s == AUTH_AGAIN || s == AUTH_CLOSE) {
            break;
        }
        pos += consumed;
        if (s == AUTH_TOO_LONG) {
            pos += f.swallow < size - pos ? f.swallow : size - pos;
        }
        if (admin) {
            /* Authenticated: the rest is ordinary commands, whose
             * parser has its own target. */
            break;
        }
    }
    return 0;
}
