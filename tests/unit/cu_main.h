/*
 * cu_main.h - a tiny CUnit harness: declare suites as arrays of tests,
 * run them all verbosely, print one summary line, and exit nonzero if
 * anything failed.  Include it once, from the test program's main file.
 *
 * The summary line, "RESULT: <passed> passed, <failed> failed" (counting
 * test functions), is what the project's test runner adds up across
 * programs.
 */
#ifndef CU_MAIN_H
#define CU_MAIN_H

#include <CUnit/Basic.h>
#include <stdio.h>

struct cu_test {
    const char *name;
    void (*fn)(void);
};

struct cu_suite {
    const char *name;
    const struct cu_test *tests; /* ends with {NULL, NULL} */
    int (*init)(void);
    int (*cleanup)(void);
};

/* CUnit's own CU_TEST(value) assertion is replaced by this registration
 * macro; use CU_ASSERT instead. */
#undef CU_TEST
#define CU_TEST(fn) {#fn, fn}
#define CU_END {NULL, NULL}

static int
cu_run(const struct cu_suite *suites, size_t n)
{
    unsigned run, failed;

    if (CU_initialize_registry() != CUE_SUCCESS) {
        fprintf(stderr, "CUnit: %s\n", CU_get_error_msg());
        return 2;
    }
    for (size_t i = 0; i < n; i++) {
        CU_pSuite s = CU_add_suite(suites[i].name, suites[i].init,
                                   suites[i].cleanup);
        if (s == NULL) {
            fprintf(stderr, "CUnit: %s\n", CU_get_error_msg());
            CU_cleanup_registry();
            return 2;
        }
        for (const struct cu_test *t = suites[i].tests; t->name; t++) {
            if (CU_add_test(s, t->name, t->fn) == NULL) {
                fprintf(stderr, "CUnit: %s\n", CU_get_error_msg());
                CU_cleanup_registry();
                return 2;
            }
        }
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    run = CU_get_number_of_tests_run();
    failed = CU_get_number_of_tests_failed();
    if (CU_get_number_of_failures() > 0 && failed == 0) {
        failed = 1; /* a failure outside any test (suite init) */
    }
    printf("\nRESULT: %u passed, %u failed\n", run - (failed > run ? run : failed),
           failed);
    CU_cleanup_registry();
    return failed > 0 ? 1 : 0;
}

#define CU_MAIN(...)                                                          \
    int main(void)                                                            \
    {                                                                         \
        static const struct cu_suite cu_suites_[] = {__VA_ARGS__};            \
        return cu_run(cu_suites_, sizeof(cu_suites_) / sizeof(cu_suites_[0])); \
    }

#endif /* CU_MAIN_H */
