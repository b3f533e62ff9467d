/*
 * status.c - corral_strerror() and corral_version(), from the tables in
 * corral.h.
 */
#include "corral.h"

#define STR2(x) #x
#define STR(x) STR2(x)

CORRAL_API const char *
corral_strerror(corral_status_t status)
{
    switch (status) {
#define STATUS_CASE(name, value, text)                                        \
    case CORRAL_##name:                                                       \
        return text;
        CORRAL_STATUS_TABLE(STATUS_CASE)
#undef STATUS_CASE
    }
    return "unknown status";
}

CORRAL_API const char *
corral_version(void)
{
    return STR(CORRAL_VERSION_MAJOR) "." STR(CORRAL_VERSION_MINOR) "." STR(
        CORRAL_VERSION_PATCH);
}
