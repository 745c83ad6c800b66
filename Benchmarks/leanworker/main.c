// The lean worker of the crash-to-respawn benchmark: a static C program that does only
// what the benchmark measures — a CLOCK_MONOTONIC stamp first thing, a sleep, a stamp just
// before it exits. Linked statically by Benchmarks/run (cc -static), so that its own start
// (no dynamic loader, no shared libraries) is a small part of the figure and the
// supervisor's part shows.
//
//   aibox-bench-leanworker --stamp FILE --exit-stamp FILE --exit-after MS
//
// It exits with 1. The stamps are "NS PID\n" lines, as aibox-example-worker writes them.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void append_stamp(const char *path, uint64_t ns) {
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return;
    char line[64];
    int n = snprintf(line, sizeof line, "%llu %d\n", (unsigned long long)ns, (int)getpid());
    (void)!write(fd, line, (size_t)n);
    close(fd);
}

int main(int argc, char **argv) {
    uint64_t start = now_ns();
    const char *stamp = NULL, *exit_stamp = NULL;
    long exit_after = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--stamp")) stamp = argv[i + 1];
        else if (!strcmp(argv[i], "--exit-stamp")) exit_stamp = argv[i + 1];
        else if (!strcmp(argv[i], "--exit-after")) exit_after = atol(argv[i + 1]);
        else {
            fprintf(stderr, "usage: aibox-bench-leanworker --stamp FILE --exit-stamp FILE --exit-after MS\n");
            return 2;
        }
    }
    if (stamp) append_stamp(stamp, start);
    struct timespec ts = {.tv_sec = exit_after / 1000, .tv_nsec = (exit_after % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
    if (exit_stamp) append_stamp(exit_stamp, now_ns());
    return 1;
}
