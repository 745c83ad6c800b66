// A stick that takes its time: preloaded (LD_PRELOAD), mount(2) waits
// $AIBOX_TEST_MOUNT_DELAY_MS milliseconds before doing the real mount. Whatever process
// mounts the stick — the daemon itself, or a child of it — is held up that long.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <time.h>

int mount(const char *source, const char *target, const char *type, unsigned long flags, const void *data) {
    int (*real)(const char *, const char *, const char *, unsigned long, const void *) = dlsym(RTLD_NEXT, "mount");
    const char *delay = getenv("AIBOX_TEST_MOUNT_DELAY_MS");
    if (delay) {
        long ms = atol(delay);
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0) {}
    }
    return real(source, target, type, flags, data);
}
