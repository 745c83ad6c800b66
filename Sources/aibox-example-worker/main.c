// A tiny agent worker written for systemd: it speaks the notify protocol through
// libsystemd's sd_notify, so it proves that such programs run unchanged under aibox.
// Its behaviour is chosen by flags, for the examples, the tests and the benchmarks.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <systemd/sd-daemon.h>

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns) {
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ull), .tv_nsec = (long)(ns % 1000000000ull)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
}

// "NS PID\n" appended to `path`: the same line for start and exit stamps.
static void append_stamp(const char *path, uint64_t ns) {
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return;
    char line[64];
    int n = snprintf(line, sizeof line, "%llu %d\n", (unsigned long long)ns, (int)getpid());
    (void)!write(fd, line, (size_t)n);
    close(fd);
}

// For the crash-to-respawn benchmark: the time taken just before main returns, so
// that exit-to-successor is measured from the worker's last instruction.
static const char *exit_stamp = NULL;
static int finish(int code) {
    if (exit_stamp) append_stamp(exit_stamp, now_ns());
    return code;
}

static volatile sig_atomic_t got_term = 0;
static void on_term(int sig) { (void)sig; got_term = 1; }

static void usage(void) {
    fprintf(stderr,
            "usage: aibox-example-worker [options]\n"
            "  --stamp FILE          append the start time (CLOCK_MONOTONIC ns) to FILE first thing\n"
            "  --exit-stamp FILE     append the exit time (CLOCK_MONOTONIC ns) to FILE just before exiting\n"
            "  --ready-after MS      send READY=1 after MS (default 0; -1 never)\n"
            "  --no-notify           never send anything on $NOTIFY_SOCKET\n"
            "  --watchdog-stop MS    stop sending WATCHDOG=1 after MS (a wedged worker)\n"
            "  --exit-after MS       exit after MS with --exit-code (default 1)\n"
            "  --exit-code N\n"
            "  --crash-every MS      exit 1 after a random time up to MS\n"
            "  --ignore-term         ignore SIGTERM (so it is killed after stop-timeout)\n"
            "  --grandchild          fork a child that outlives this process\n"
            "  --leak-mb N           allocate and touch N MiB per second\n"
            "  --quiet               print no heartbeat lines\n");
    exit(2);
}

int main(int argc, char **argv) {
    long ready_after = 0, watchdog_stop = -1, exit_after = -1, crash_every = -1, leak_mb = 0;
    int exit_code = 1, notify = 1, ignore_term = 0, grandchild = 0, quiet = 0;
    const char *stamp = NULL;
    uint64_t start = now_ns();
    // SwiftPM links even a C executable with the Swift runtime, whose crash backtracer
    // takes over SIGABRT & co and makes the process linger; a plain C program has none.
    {
        const int fatal[] = {SIGABRT, SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGQUIT};
        for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++) signal(fatal[i], SIG_DFL);
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--stamp") && v) { stamp = v; i++; }
        else if (!strcmp(a, "--exit-stamp") && v) { exit_stamp = v; i++; }
        else if (!strcmp(a, "--ready-after") && v) { ready_after = atol(v); i++; }
        else if (!strcmp(a, "--no-notify")) { notify = 0; }
        else if (!strcmp(a, "--watchdog-stop") && v) { watchdog_stop = atol(v); i++; }
        else if (!strcmp(a, "--exit-after") && v) { exit_after = atol(v); i++; }
        else if (!strcmp(a, "--exit-code") && v) { exit_code = atoi(v); i++; }
        else if (!strcmp(a, "--crash-every") && v) { crash_every = atol(v); i++; }
        else if (!strcmp(a, "--ignore-term")) { ignore_term = 1; }
        else if (!strcmp(a, "--grandchild")) { grandchild = 1; }
        else if (!strcmp(a, "--leak-mb") && v) { leak_mb = atol(v); i++; }
        else if (!strcmp(a, "--quiet")) { quiet = 1; }
        else usage();
    }
    if (stamp) append_stamp(stamp, start);
    signal(SIGTERM, ignore_term ? SIG_IGN : on_term);
    if (grandchild) {
        pid_t child = fork();
        if (child == 0) {
            signal(SIGTERM, SIG_IGN);  // only SIGKILL to the group ends it
            for (;;) pause();
        }
    }
    if (crash_every > 0) {
        srand((unsigned)(start ^ (uint64_t)getpid()));
        exit_after = 1 + rand() % crash_every;
    }

    uint64_t watchdog_usec = 0;
    const char *w = getenv("WATCHDOG_USEC");
    if (w) watchdog_usec = strtoull(w, NULL, 10);
    uint64_t ping_every = watchdog_usec ? watchdog_usec * 1000ull / 2 : 1000000000ull;
    int ready_sent = 0;
    uint64_t next_ping = start + ping_every, next_leak = start;
    unsigned long beats = 0;
    for (;;) {
        uint64_t t = now_ns();
        uint64_t elapsed_ms = (t - start) / 1000000ull;
        if (got_term) {
            if (notify) sd_notify(0, "STOPPING=1");
            if (!quiet) printf("worker %d: stopping on SIGTERM\n", (int)getpid());
            return finish(0);
        }
        if (exit_after >= 0 && (long)elapsed_ms >= exit_after) {
            if (!quiet) printf("worker %d: exiting with %d\n", (int)getpid(), exit_code);
            fflush(stdout);
            return finish(exit_code);
        }
        if (notify && !ready_sent && ready_after >= 0 && (long)elapsed_ms >= ready_after) {
            sd_notify(0, "READY=1\nSTATUS=serving");
            ready_sent = 1;
        }
        if (t >= next_ping) {
            if (notify && watchdog_usec && (watchdog_stop < 0 || (long)elapsed_ms < watchdog_stop))
                sd_notify(0, "WATCHDOG=1");
            if (!quiet) { printf("worker %d: heartbeat %lu\n", (int)getpid(), ++beats); fflush(stdout); }
            next_ping += ping_every;
        }
        if (leak_mb > 0 && t >= next_leak) {
            size_t n = (size_t)leak_mb << 20;
            char *p = malloc(n);
            if (p) memset(p, 1, n);
            next_leak += 1000000000ull;
        }
        // Sleep until the next thing to do, at most 50 ms.
        uint64_t wake = next_ping;
        if (notify && !ready_sent && ready_after >= 0) {  // with --no-notify, ready_sent stays 0: no busy loop
            uint64_t r = start + (uint64_t)ready_after * 1000000ull;
            if (r < wake) wake = r;
        }
        if (exit_after >= 0) {
            uint64_t e = start + (uint64_t)exit_after * 1000000ull;
            if (e < wake) wake = e;
        }
        t = now_ns();
        uint64_t d = wake > t ? wake - t : 0;
        if (d > 50000000ull) d = 50000000ull;
        sleep_ns(d);
    }
}
