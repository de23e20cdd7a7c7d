/* A fault injector for envctl's crash tests, loaded with LD_PRELOAD.
 *
 * ENVCTL_KILL_CALL names a libc call (rename, renameat2, link, linkat, symlink, unlink, unlinkat,
 * chmod, fchmodat, utimensat, syncfs, fsync, flock, mkdir, rmdir, openat, write) and ENVCTL_KILL_AT a
 * number N: the Nth call of it in the process raises SIGKILL before doing anything, exactly as a
 * power cut or an OOM kill would stop the process at that point. Every other call goes through.
 *
 * ENVCTL_COUNT_FILE names a file to which, at exit, the process appends how many times it made
 * each call ("name count" lines), so a harness can aim at every call a command makes.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static const char *NAMES[] = {"rename", "renameat", "renameat2", "link", "linkat", "symlink", "unlink",
                              "unlinkat", "rmdir", "mkdir", "chmod", "fchmodat", "utimensat", "syncfs", "fsync",
                              "flock", "write", "openat"};
#define N_NAMES (sizeof NAMES / sizeof NAMES[0])
static atomic_long counts[N_NAMES];

static void maybe_die(const char *name) {
    size_t i = 0;
    while (i < N_NAMES && strcmp(NAMES[i], name) != 0) i++;
    if (i == N_NAMES) return;
    long n = atomic_fetch_add(&counts[i], 1) + 1;
    const char *want = getenv("ENVCTL_KILL_CALL");
    const char *at = getenv("ENVCTL_KILL_AT");
    if (want && at && strcmp(want, name) == 0 && n == atol(at)) raise(SIGKILL);
}

__attribute__((destructor)) static void report_counts(void) {
    const char *path = getenv("ENVCTL_COUNT_FILE");
    if (!path) return;
    char line[64 * N_NAMES];
    size_t len = 0;
    for (size_t i = 0; i < N_NAMES; i++) {
        int n = snprintf(line + len, sizeof line - len, "%s %ld\n", NAMES[i], atomic_load(&counts[i]));
        if (n > 0) len += (size_t)n;
    }
    static int (*real_open)(const char *, int, ...);
    static ssize_t (*real_write)(int, const void *, size_t);
    if (!real_open) real_open = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open64");
    if (!real_write) real_write = (ssize_t(*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    int fd = real_open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        real_write(fd, line, len);
        close(fd);
    }
}

#define NEXT(ret, name, ...) \
    static ret (*real)(__VA_ARGS__); \
    if (!real) real = (ret(*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name); \
    maybe_die(#name)

int rename(const char *a, const char *b) { NEXT(int, rename, const char *, const char *); return real(a, b); }
int renameat(int da, const char *a, int db, const char *b) { NEXT(int, renameat, int, const char *, int, const char *); return real(da, a, db, b); }
int renameat2(int da, const char *a, int db, const char *b, unsigned f) { NEXT(int, renameat2, int, const char *, int, const char *, unsigned); return real(da, a, db, b, f); }
int link(const char *a, const char *b) { NEXT(int, link, const char *, const char *); return real(a, b); }
int linkat(int da, const char *a, int db, const char *b, int f) { NEXT(int, linkat, int, const char *, int, const char *, int); return real(da, a, db, b, f); }
int symlink(const char *a, const char *b) { NEXT(int, symlink, const char *, const char *); return real(a, b); }
int unlink(const char *a) { NEXT(int, unlink, const char *); return real(a); }
int unlinkat(int d, const char *a, int f) { NEXT(int, unlinkat, int, const char *, int); return real(d, a, f); }
int rmdir(const char *a) { NEXT(int, rmdir, const char *); return real(a); }
int mkdir(const char *a, mode_t m) { NEXT(int, mkdir, const char *, mode_t); return real(a, m); }
int chmod(const char *a, mode_t m) { NEXT(int, chmod, const char *, mode_t); return real(a, m); }
int fchmodat(int d, const char *a, mode_t m, int f) { NEXT(int, fchmodat, int, const char *, mode_t, int); return real(d, a, m, f); }
int utimensat(int d, const char *a, const struct timespec t[2], int f) { NEXT(int, utimensat, int, const char *, const struct timespec *, int); return real(d, a, t, f); }
int syncfs(int fd) { NEXT(int, syncfs, int); return real(fd); }
int fsync(int fd) { NEXT(int, fsync, int); return real(fd); }
int flock(int fd, int op) { NEXT(int, flock, int, int); return real(fd, op); }
ssize_t write(int fd, const void *b, size_t n) { NEXT(ssize_t, write, int, const void *, size_t); return real(fd, b, n); }
int openat(int d, const char *a, int f, ...) {
    mode_t m = 0;
    if (f & (O_CREAT | O_TMPFILE)) { va_list ap; va_start(ap, f); m = va_arg(ap, mode_t); va_end(ap); }
    NEXT(int, openat, int, const char *, int, ...);
    return real(d, a, f, m);
}
int open64(const char *a, int f, ...) {
    mode_t m = 0;
    if (f & (O_CREAT | O_TMPFILE)) { va_list ap; va_start(ap, f); m = va_arg(ap, mode_t); va_end(ap); }
    static int (*real)(const char *, int, ...);
    if (!real) real = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open64");
    maybe_die("openat");
    return real(a, f, m);
}
