/*
 * auth.c - the credentials file and the authentication request of
 * memcached's text protocol (-Y), see auth.h.
 *
 * The file is read whole into one buffer; each entry points into it:
 *
 *   data: "alice:secret\nbob:hunter2\n"
 *          ^user ^pass     ^user ^pass      (':' and '\n' kept, unused)
 *
 * Checking walks every entry and compares every byte of equal-length
 * candidates, whatever matched before, so that the time taken depends
 * only on the lengths involved.
 *
 * auth_parse() reproduces memcached 1.6's pre-authentication framing
 * (proto_text.c, try_read_command_asciiauth): the line is split on
 * spaces, the last token keeping a "\r" if there is one; a line that is
 * not "set <key> <flags> <exptime> <bytes> ..." is refused, and memcached
 * answers each refused line "CLIENT_ERROR unauthenticated".  Unlike
 * memcached, the data block is bounded (AUTH_TOKEN_MAX): a larger one is
 * discarded as it arrives rather than buffered, so an unauthenticated
 * connection never holds more than one read block.
 */
#include "auth.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The largest credentials file read. */
#define AUTH_FILE_MAX ((size_t)1 << 20)

struct auth_entry {
    const char *user;
    size_t nuser;
    const char *pass;
    size_t npass;
};

struct auth {
    char *data;                 /* the file's bytes */
    size_t ndata;
    struct auth_entry *entries;
    size_t nentries;
};

/* ---------------------------------------------------------------------- */
/* The file                                                               */

/* Free what auth_load() built, after it wrote its message. */
static struct auth *
auth_fail(struct auth *a)
{
    auth_destroy(a);
    return NULL;
}

/* Read the whole file into a->data (NUL-terminated). */
static int
auth_read(struct auth *a, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    struct stat sb;
    size_t n;

    if (f == NULL) {
        snprintf(err, errlen, "cannot open the auth file %s: %s", path,
                 strerror(errno));
        return -1;
    }
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode) ||
        (size_t)sb.st_size > AUTH_FILE_MAX) {
        snprintf(err, errlen, "the auth file %s is not a regular file of "
                 "at most %zu bytes", path, AUTH_FILE_MAX);
        fclose(f);
        return -1;
    }
    a->data = malloc((size_t)sb.st_size + 1);
    if (a->data == NULL) {
        snprintf(err, errlen, "out of memory reading %s", path);
        fclose(f);
        return -1;
    }
    n = fread(a->data, 1, (size_t)sb.st_size, f);
    if (ferror(f)) {
        snprintf(err, errlen, "cannot read the auth file %s", path);
        fclose(f);
        return -1;
    }
    fclose(f);
    a->data[n] = '\0';
    a->ndata = n;
    return 0;
}

struct auth *
auth_load(const char *path, char *err, size_t errlen)
{
    struct auth *a = calloc(1, sizeof(*a));
    size_t lines = 1, line = 0;
    char *p, *end;

    if (a == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (auth_read(a, path, err, errlen) != 0) {
        auth_destroy(a);
        return NULL;
    }
    for (size_t i = 0; i < a->ndata; i++) {
        lines += a->data[i] == '\n';
    }
    a->entries = calloc(lines, sizeof(*a->entries));
    if (a->entries == NULL) {
        snprintf(err, errlen, "out of memory reading %s", path);
        return auth_fail(a);
    }
    p = a->data;
    end = a->data + a->ndata;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *eol = nl != NULL ? nl : end;
        char *colon;
        struct auth_entry *e;

        line++;
        if (eol > p && eol[-1] == '\r') {
            eol--;
        }
        if (eol == p) {
            p = nl != NULL ? nl + 1 : end; /* blank lines are skipped */
            continue;
        }
        colon = memchr(p, ':', (size_t)(eol - p));
        if (colon == NULL || colon == p || colon + 1 == eol) {
            snprintf(err, errlen, "%s:%zu: expected user:password, both "
                     "non-empty", path, line);
            return auth_fail(a);
        }
        if (memchr(p, ' ', (size_t)(eol - p)) != NULL ||
            memchr(p, '\r', (size_t)(eol - p)) != NULL ||
            memchr(p, '\0', (size_t)(eol - p)) != NULL) {
            snprintf(err, errlen, "%s:%zu: user names and passwords "
                     "cannot hold spaces", path, line);
            return auth_fail(a);
        }
        e = &a->entries[a->nentries++];
        e->user = p;
        e->nuser = (size_t)(colon - p);
        e->pass = colon + 1;
        e->npass = (size_t)(eol - colon - 1);
        p = nl != NULL ? nl + 1 : end;
    }
    if (a->nentries == 0) {
        snprintf(err, errlen, "the auth file %s holds no user:password "
                 "line", path);
        return auth_fail(a);
    }
    return a;
}

void
auth_destroy(struct auth *a)
{
    if (a == NULL) {
        return;
    }
    if (a->data != NULL) {
        /* volatile: the wipe must not be optimised away */
        volatile char *v = a->data;
        for (size_t i = 0; i < a->ndata; i++) {
            v[i] = 0;
        }
    }
    free(a->data);
    free(a->entries);
    free(a);
}

size_t
auth_count(const struct auth *a)
{
    return a != NULL ? a->nentries : 0;
}

/* Compare @n bytes in time that depends on @n only; 0 when equal. */
static unsigned
auth_diff(const char *x, const char *y, size_t n)
{
    unsigned d = 0;

    for (size_t i = 0; i < n; i++) {
        d |= (unsigned char)(x[i] ^ y[i]);
    }
    return d;
}

bool
auth_check(const struct auth *a, const char *user, size_t nuser,
           const char *pass, size_t npass)
{
    unsigned found = 0;

    for (size_t i = 0; i < a->nentries; i++) {
        const struct auth_entry *e = &a->entries[i];
        if (e->nuser == nuser && e->npass == npass) {
            unsigned d = auth_diff(e->user, user, nuser) |
                         auth_diff(e->pass, pass, npass);
            found |= d == 0;
        }
    }
    return found != 0;
}

/* ---------------------------------------------------------------------- */
/* The request                                                            */

/*
 * Split [p, end) on spaces, memcached's way (runs of spaces separate,
 * nothing else does).  Stores up to @max tokens; returns how many there
 * are in all.
 */
static size_t
auth_tokens(const char *p, const char *end, const char **tok, size_t *ntok,
            size_t max)
{
    size_t n = 0;

    while (p < end) {
        const char *s;

        while (p < end && *p == ' ') {
            p++;
        }
        if (p == end) {
            break;
        }
        s = p;
        while (p < end && *p != ' ') {
            p++;
        }
        if (n < max) {
            tok[n] = s;
            ntok[n] = (size_t)(p - s);
        }
        n++;
    }
    return n;
}

/* A byte count: decimal digits (a last token may end in "\r"), at most
 * 2^32 - 1, as memcached's safe_strtoul accepts. */
static bool
auth_size(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;

    if (n > 0 && s[n - 1] == '\r') {
        n--;
    }
    if (n == 0 || n > 10) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > UINT32_MAX) {
        return false;
    }
    *out = v;
    return true;
}

enum auth_step
auth_parse(const char *buf, size_t len, size_t *consumed, size_t *need,
           struct auth_frame *out)
{
    const char *nl, *data, *tok[5];
    size_t ntok[5], linelen, n;
    uint64_t size;

    *consumed = 0;
    *need = 0;
    memset(out, 0, sizeof(*out));
    nl = memchr(buf, '\n', len);
    if (nl == NULL) {
        return len > AUTH_LINE_MAX ? AUTH_CLOSE : AUTH_AGAIN;
    }
    linelen = (size_t)(nl - buf) + 1;
    n = auth_tokens(buf, nl, tok, ntok, 5);
    if (n < 5 || ntok[0] != 3 || memcmp(tok[0], "set", 3) != 0 ||
        !auth_size(tok[4], ntok[4], &size)) {
        *consumed = linelen;
        return AUTH_REFUSED;
    }
    if (size > AUTH_TOKEN_MAX) {
        *consumed = linelen;
        out->swallow = (size_t)size + 2;
        return AUTH_TOO_LONG;
    }
    if (len - linelen < (size_t)size + 2) {
        *need = linelen + (size_t)size + 2;
        return AUTH_AGAIN;
    }
    *consumed = linelen + (size_t)size + 2;
    data = buf + linelen;
    if (data[size] != '\r' || data[size + 1] != '\n') {
        return AUTH_BAD_TERMINATION;
    }
    n = auth_tokens(data, data + size, tok, ntok, 2);
    if (n < 2) {
        return AUTH_BAD_FORMAT;
    }
    out->user = tok[0];
    out->nuser = ntok[0];
    out->pass = tok[1];
    out->npass = ntok[1];
    return AUTH_TOKEN;
}
