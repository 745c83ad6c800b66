// The limit for crash-to-respawn: a bare loop of posix_spawn + waitpid, with nothing a
// supervisor does in between (no bookkeeping, no logging, no timers, no pipes).
//
//   aibox-bench-spawnloop COUNT PROGRAM [ARG...]
//
// Starts PROGRAM COUNT times, one after the other: as soon as waitpid returns, the next
// one is spawned. The program measures itself (aibox-example-worker --stamp/--exit-stamp);
// this loop only prints how many runs it made. SIGTERM or SIGINT passes the signal on to the
// running child, waits for it and stops, so that nothing is left behind.
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static volatile sig_atomic_t stop_signal = 0;
static void on_stop(int sig) { stop_signal = sig; }

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: aibox-bench-spawnloop COUNT PROGRAM [ARG...]\n");
        return 2;
    }
    char *end = NULL;
    long count = strtol(argv[1], &end, 10);
    if (end == argv[1] || *end != '\0' || count < 1) {
        fprintf(stderr, "aibox-bench-spawnloop: COUNT must be a positive integer, not \"%s\"\n", argv[1]);
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;  // no SA_RESTART: waitpid returns EINTR
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    // The child starts with default dispositions for the signals we catch (exec resets
    // handlers anyway) and an empty mask.
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);

    long runs = 0;
    int status = 0;
    for (; runs < count && !stop_signal; runs++) {
        pid_t pid;
        int err = posix_spawn(&pid, argv[2], NULL, &attr, &argv[2], environ);
        if (err != 0) {
            fprintf(stderr, "aibox-bench-spawnloop: posix_spawn %s: %s\n", argv[2], strerror(err));
            return 1;
        }
        if (stop_signal) kill(pid, stop_signal);
        while (waitpid(pid, &status, 0) < 0) {
            if (errno != EINTR) {
                perror("aibox-bench-spawnloop: waitpid");
                return 1;
            }
            if (stop_signal) kill(pid, stop_signal);
        }
    }
    posix_spawnattr_destroy(&attr);
    printf("aibox-bench-spawnloop: %ld runs of %s%s\n", runs, argv[2], stop_signal ? " (stopped by a signal)" : "");
    return stop_signal ? 1 : 0;
}
