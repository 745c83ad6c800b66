// First boot: hashing the admin password with crypt(3) (libxcrypt: yescrypt, the Debian
// default), and attaching an image file to a loop device so that a provisioning volume
// given as a file (development, umockdev) mounts like a block device.
#define _GNU_SOURCE
#include "CAIBoxOS.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

// ioctl(2) by its system call, not libc's wrapper: a preloaded library that wraps ioctl
// (umockdev does, for the devices it emulates) must not answer for the loop driver.
static long loop_ioctl(int fd, unsigned long request, unsigned long arg) { return syscall(SYS_ioctl, fd, request, arg); }

int aibox_hash_password(const char *password, char *out, size_t out_size) {
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    // yescrypt with the default cost; the random salt comes from the kernel.
    if (!crypt_gensalt_rn("$y$", 0, NULL, 0, setting, sizeof setting)) return -1;
    struct crypt_data data;
    memset(&data, 0, sizeof data);
    char *hash = crypt_r(password, setting, &data);
    int ok = hash && hash[0] != '*' && strlen(hash) < out_size;
    if (ok) strcpy(out, hash);
    explicit_bzero(&data, sizeof data);
    return ok ? 0 : -1;
}

int aibox_loop_attach(int backing_fd, int read_only, char *device, size_t device_size) {
    int control = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (control < 0) return -1;
    for (int attempt = 0; attempt < 8; attempt++) {
        int n = (int)loop_ioctl(control, LOOP_CTL_GET_FREE, 0);
        if (n < 0) break;
        snprintf(device, device_size, "/dev/loop%d", n);
        int loop = open(device, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
        if (loop < 0) break;
        struct loop_config config;
        memset(&config, 0, sizeof config);
        config.fd = (unsigned)backing_fd;
        config.info.lo_flags = LO_FLAGS_AUTOCLEAR | (read_only ? LO_FLAGS_READ_ONLY : 0);
        if (loop_ioctl(loop, LOOP_CONFIGURE, (unsigned long)&config) == 0) {
            close(control);
            return loop;  // the caller keeps it open until mounted; autoclear detaches after umount
        }
        int e = errno;
        close(loop);
        if (e != EBUSY) {
            errno = e;
            break;
        }
        // Taken between GET_FREE and CONFIGURE: another one.
    }
    int e = errno;
    close(control);
    errno = e;
    return -1;
}

#include <linux/fs.h>

int aibox_block_device_size(int fd, unsigned long long *bytes) {
    unsigned long long size = 0;
    if (ioctl(fd, BLKGETSIZE64, &size) != 0) return -1;
    *bytes = size;
    return 0;
}
