/*
 * log.h - corrald's leveled logging to stderr.
 *
 * Levels follow memcached's -v flags: 0 (default) errors and warnings
 * only, 1 (-v) also notices about the server's life (startup, listening,
 * connection limits), 2 (-vv) also one line per connection event and per
 * command, 3 (-vvv) internal state transitions (each connection's
 * "going from <state> to <state>", as memcached prints them).  Nothing is
 * logged per request below -vv.  The level is one
 * process-wide value because the "verbosity" command changes it at run
 * time from any worker; it is an atomic, read without a lock.
 */
#ifndef CORRALD_LOG_H
#define CORRALD_LOG_H

#include <stdarg.h>

enum log_level {
    LOG_ERROR = -2, /* always printed */
    LOG_WARN = -1,  /* always printed */
    LOG_INFO = 1,   /* -v */
    LOG_VERBOSE = 2, /* -vv: per connection and per command */
    LOG_DEBUG = 3   /* -vvv */
};

/* The highest verbosity, as memcached's MAX_VERBOSITY_LEVEL. */
#define LOG_LEVEL_MAX 2

/*
 * log_init - look at the environment once: when stderr is the systemd
 * journal's stream, lines carry its priority prefixes.  Call before any
 * thread starts.
 */
void log_init(void);

/* log_set_level - set the verbosity (clamped to 0..LOG_LEVEL_MAX + 1). */
void log_set_level(int level);

/* log_get_level - the current verbosity.  Thread-safe. */
int log_get_level(void);

/* log_enabled - whether a message at @level would be printed. */
int log_enabled(enum log_level level);

/*
 * log_msg - print one line, prefixed with the level's tag, if the level
 * is enabled.  Thread-safe: the line is written with a single write(2).
 */
void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_verbose(...)                                                      \
    do {                                                                      \
        if (log_enabled(LOG_VERBOSE)) {                                       \
            log_msg(LOG_VERBOSE, __VA_ARGS__);                                \
        }                                                                     \
    } while (0)
#define log_debug(...)                                                        \
    do {                                                                      \
        if (log_enabled(LOG_DEBUG)) {                                         \
            log_msg(LOG_DEBUG, __VA_ARGS__);                                  \
        }                                                                     \
    } while (0)

#endif /* CORRALD_LOG_H */
