/*
 * replay_main.c - a main() for fuzz targets in builds without libFuzzer:
 * it feeds every file of the given corpus directories (or files) to
 * LLVMFuzzerTestOneInput(), so that make check runs the checked-in corpus
 * under gcc, and under the sanitizers in sanitizer builds.
 *
 *   replay_proto [dir-or-file ...]   (default: REPLAY_CORPUS, set at build)
 *
 * A target reports a violation by aborting, which fails the test loudly;
 * otherwise this prints "RESULT: <inputs> passed, 0 failed" for the
 * project's test runner.  It sets fuzz_replay_mode so a target may check
 * more thoroughly than it can afford while fuzzing (every split point).
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Read by targets that declare it (weakly). */
int fuzz_replay_mode = 1;

static int
replay_file(const char *path, size_t *count)
{
    FILE *f = fopen(path, "rb");
    unsigned char *data = NULL;
    size_t cap = 0, len = 0, n;

    if (f == NULL) {
        perror(path);
        return -1;
    }
    for (;;) {
        if (len == cap) {
            unsigned char *grown;

            cap = cap == 0 ? 4096 : cap * 2;
            grown = realloc(data, cap);
            if (grown == NULL) {
                fprintf(stderr, "%s: out of memory\n", path);
                free(data);
                fclose(f);
                return -1;
            }
            data = grown;
        }
        n = fread(data + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            break;
        }
    }
    if (ferror(f)) {
        perror(path);
        free(data);
        fclose(f);
        return -1;
    }
    fclose(f);
    /* the data gets its own block of exactly len bytes, as libFuzzer does */
    {
        unsigned char *exact = malloc(len > 0 ? len : 1);

        if (exact == NULL) {
            free(data);
            return -1;
        }
        if (len > 0) {
            memcpy(exact, data, len);
        }
        free(data);
        LLVMFuzzerTestOneInput(exact, len);
        free(exact);
    }
    (*count)++;
    return 0;
}

static int
replay_path(const char *path, size_t *count)
{
    struct stat st;
    DIR *dir;
    struct dirent *de;
    int rc = 0;

    if (stat(path, &st) != 0) {
        perror(path);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        return replay_file(path, count);
    }
    dir = opendir(path);
    if (dir == NULL) {
        perror(path);
        return -1;
    }
    while ((de = readdir(dir)) != NULL) {
        char *child;
        size_t n;

        if (de->d_name[0] == '.') {
            continue;
        }
        n = strlen(path) + 1 + strlen(de->d_name) + 1;
        child = malloc(n);
        if (child == NULL) {
            rc = -1;
            break;
        }
        snprintf(child, n, "%s/%s", path, de->d_name);
        if (replay_path(child, count) != 0) {
            rc = -1;
        }
        free(child);
    }
    closedir(dir);
    return rc;
}

int
main(int argc, char **argv)
{
    size_t count = 0;
    int rc = 0;

    if (argc < 2) {
#ifdef REPLAY_CORPUS
        rc = replay_path(REPLAY_CORPUS, &count);
#else
        fprintf(stderr, "usage: %s corpus-dir-or-file...\n", argv[0]);
        return 2;
#endif
    }
    for (int i = 1; i < argc; i++) {
        if (replay_path(argv[i], &count) != 0) {
            rc = -1;
        }
    }
    if (rc != 0 || count == 0) {
        printf("\nRESULT: %zu passed, 1 failed\n", count);
        return 1;
    }
    printf("\nRESULT: %zu passed, 0 failed\n", count);
    return 0;
}
