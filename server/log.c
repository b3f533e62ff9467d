/*
 * log.c - leveled logging to stderr (see log.h).
 *
 * Invariants: the level is a relaxed atomic (it orders nothing); each
 * message is formatted into a stack buffer and written with one write(2)
 * so that lines from different threads never interleave.  Messages longer
 * than the buffer are truncated.
 */
#include "log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define LOG_LINE_MAX 1024

static atomic_int log_level;

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
    int n, m;

    if (!log_enabled(level)) {
        return;
    }
    switch (level) {
    case LOG_ERROR:
        tag = "corrald: error: ";
        break;
    case LOG_WARN:
        tag = "corrald: warning: ";
        break;
    default:
        tag = "";
        break;
    }
    n = snprintf(line, sizeof(line), "%s", tag);
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
    line[n++] = '\n';
    /* Nothing useful can be done when stderr is gone. */
    if (write(STDERR_FILENO, line, (size_t)n) < 0) {
        return;
    }
}
