/*
 * auth.h - memcached's text protocol authentication (-Y authfile): the
 * credentials file, and the one request an unauthenticated connection
 * may make.
 *
 * The file holds "user:password" lines.  A connection authenticates by
 * sending a set whose data is "user password"; the key, flags and exptime
 * are ignored.  Until then every other line is refused.
 *
 * Threads: auth_load() runs once at startup; the struct auth is then
 * read-only, and auth_check() may be called from any thread.
 * auth_parse() is a pure function of its input.
 */
#ifndef CORRALD_AUTH_H
#define CORRALD_AUTH_H

#include <stdbool.h>
#include <stddef.h>

struct auth;

/* Lines beyond which an unauthenticated client is cut off, and the
 * largest "user password" data block that is read (larger ones are
 * refused and their bytes discarded without being buffered). */
#define AUTH_LINE_MAX 2048
#define AUTH_TOKEN_MAX 1024

/*
 * auth_load - read the credentials file at @path.  Returns the
 * credentials, or NULL with a message in @err (at most @errlen bytes):
 * the file cannot be read, is empty, too large, or has a line without
 * ':' or with an empty user name.  Lines may end in "\n" or "\r\n".
 */
struct auth *auth_load(const char *path, char *err, size_t errlen);

/* auth_destroy - free (wiping the passwords).  NULL is a no-op. */
void auth_destroy(struct auth *a);

/* auth_count - how many credentials were loaded. */
size_t auth_count(const struct auth *a);

/*
 * auth_check - true if @user and @pass are one of the loaded pairs.  The
 * comparison takes the same time whatever the bytes compared (it
 * depends on the lengths only), so timing does not reveal how much of
 * a password was right.
 */
bool auth_check(const struct auth *a, const char *user, size_t nuser,
                const char *pass, size_t npass);

/* What auth_parse() found at the start of a buffer. */
enum auth_step {
    AUTH_AGAIN,           /* incomplete: wait for more bytes */
    AUTH_CLOSE,           /* no newline in AUTH_LINE_MAX bytes: close */
    AUTH_REFUSED,         /* a line that is not an authentication set */
    AUTH_TOKEN,           /* a complete set: check user and pass */
    AUTH_BAD_FORMAT,      /* data without "user password" */
    AUTH_BAD_TERMINATION, /* data not followed by "\r\n" */
    AUTH_TOO_LONG         /* data over AUTH_TOKEN_MAX: swallow it */
};

struct auth_frame {
    const char *user;    /* AUTH_TOKEN: into the buffer */
    size_t nuser;
    const char *pass;
    size_t npass;
    size_t swallow;      /* AUTH_TOO_LONG: data bytes still to discard */
};

/*
 * auth_parse - look at the request at the start of @buf (@len bytes) as
 * memcached does before a connection has authenticated: a line starting
 * with "set" and having at least five space separated tokens, the fifth
 * a byte count, is followed by that many bytes and "\r\n" holding the
 * user name and password separated by spaces; any other line is
 * refused whole.
 * @consumed (OUT): bytes used (0 for AGAIN and CLOSE).
 * @need (OUT): for AGAIN, the total bytes needed if known, else 0.
 * @out (OUT): for TOKEN, the credentials (pointers into @buf); for
 *       TOO_LONG, the bytes to discard beyond @consumed.
 * Never reads past @len; never allocates.
 */
enum auth_step auth_parse(const char *buf, size_t len, size_t *consumed,
                          size_t *need, struct auth_frame *out);

#endif /* CORRALD_AUTH_H */
