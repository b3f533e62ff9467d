/*
 * log.c - leveled logging to stderr (see log.h).
 *
 * Invariants: the level is a relaxed atomic (it orders nothing); each
 * message is formatted into a stack buffer and written with one write(2)
 * so that lines from different threads never interleave.  One event is
 * one line: messages longer than the buffer are truncated, and control
 * characters in them (a client's bytes, say) are printed as '?'.
 *
 * Under systemd, stderr is often a journal stream (JOURNAL_STREAM names
 * its device and inode); lines then start with the sd-daemon priority
 * prefix ("<3>" error, "<4>" warning, "<6>" notice, "<7>" per request
 * and debug), so the journal keeps each line's level.  log_init() decides
 * once, before any thread starts.
 */
#include "log.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOG_LINE_MAX 1024

static atomic_int log_level;
static bool log_journal;   /* written by log_init() only */

void
log_init(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;

    log_journal = js != NULL && sscanf(js, "%llu:%llu", &dev, &ino) == 2 &&
                  fstat(STDERR_FILENO, &st) == 0 &&
                  (unsigned long long)st.st_dev == dev &&
                  (unsigned long long)st.st_ino == ino;
}

void
log_set_level(int level)
{
    if (level < 0) {
        level = 0;
    }
    if (level > LOG_LEVEL_MAX + 1) {
        level = LOG_LEVEL_MAX + 1;
    }
    atomic_store_explicit(&log_level, level, memory_order_relaxed);
}

int
log_get_level(void)
{
    return atomic_load_explicit(&log_level, memory_order_relaxed);
}

int
log_enabled(enum log_level level)
{
    return (int)level <= log_get_level();
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
    char line[LOG_LINE_MAX];
    const char *tag;
    va_list ap;
    int n, m, start;

    if (!log_enabled(level)) {
        return;
    }
    switch (level) {
    case LOG_ERROR:
        tag = log_journal ? "<3>corrald: error: " : "corrald: error: ";
        break;
    case LOG_WARN:
        tag = log_journal ? "<4>corrald: warning: " : "corrald: warning: ";
        break;
    case LOG_INFO:
        tag = log_journal ? "<6>" : "";
        break;
    default:
        tag = log_journal ? "<7>" : "";
        break;
    }
    n = snprintf(line, sizeof(line), "%s", tag);
    start = n;
    va_start(ap, fmt);
    m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0) {
        return;
    }
    n += m;
    if (n > (int)sizeof(line) - 2) {
        n = (int)sizeof(line) - 2;
    }
    for (int i = start; i < n; i++) {
        unsigned char ch = (unsigned char)line[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
            line[i] = '?';
        }
    }
    line[n++] = '\n';
    /* Nothing useful can be done when stderr is gone. */
    if (write(STDERR_FILENO, line, (size_t)n) < 0) {
        return;
    }
}
