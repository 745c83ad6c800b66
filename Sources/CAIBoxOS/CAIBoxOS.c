#define _GNU_SOURCE
#include "CAIBoxOS.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#ifndef SYS_close_range
#define SYS_close_range 436
#endif

static int move_fd(int from, int to) {
    if (from == to) {
        int flags = fcntl(from, F_GETFD);
        if (flags < 0) return -1;
        return fcntl(from, F_SETFD, flags & ~FD_CLOEXEC);
    }
    return dup2(from, to) < 0 ? -1 : 0;
}

pid_t aibox_spawn(const aibox_spawn_attr *attr, int *err_step, int *err_errno) {
    // Written by the vfork child, read by the parent: they share memory until exec.
    volatile int step = AIBOX_SPAWN_STEP_NONE;
    volatile int child_errno = 0;

    struct rlimit nofile;
    long max_fd = 65536;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY) max_fd = (long)nofile.rlim_cur;

    // Block every signal across the vfork so that no handler of ours runs in the child.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);

    pid_t pid = vfork();
    if (pid == 0) {
        // Child: only raw, async-signal-safe calls from here on (glibc's setuid & co would
        // signal the parent's threads, so the id changes are raw syscalls).
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        for (int sig = 1; sig < NSIG; sig++) {
            if (sig == SIGKILL || sig == SIGSTOP) continue;
            sigaction(sig, &dfl, NULL);
        }
        if (setsid() < 0) { step = AIBOX_SPAWN_STEP_SETSID; goto fail; }
        int in = attr->stdin_fd, out = attr->stdout_fd, err = attr->stderr_fd;
        // Keep sources clear of the targets before overwriting 0, 1, 2.
        if (out == 0) { out = fcntl(out, F_DUPFD, 3); }
        if (err == 0 || err == 1) { err = fcntl(err, F_DUPFD, 3); }
        if (in < 0 || out < 0 || err < 0) { step = AIBOX_SPAWN_STEP_DUP; goto fail; }
        if (move_fd(in, 0) < 0 || move_fd(out, 1) < 0 || move_fd(err, 2) < 0) { step = AIBOX_SPAWN_STEP_DUP; goto fail; }
        if (syscall(SYS_close_range, 3U, ~0U, 0U) < 0) {
            for (long fd = 3; fd < max_fd; fd++) close((int)fd);
        }
        if (attr->reset_oom_score_adj) {
            int oom = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
            if (oom >= 0) {
                (void)!write(oom, "0", 1);
                close(oom);
            }
        }
        if (attr->drop_privileges) {
            if (syscall(SYS_setgroups, attr->ngroups, attr->groups) < 0) { step = AIBOX_SPAWN_STEP_GROUPS; goto fail; }
            if (syscall(SYS_setresgid, attr->gid, attr->gid, attr->gid) < 0) { step = AIBOX_SPAWN_STEP_GID; goto fail; }
            if (syscall(SYS_setresuid, attr->uid, attr->uid, attr->uid) < 0) { step = AIBOX_SPAWN_STEP_UID; goto fail; }
        }
        if (attr->workdir != NULL && chdir(attr->workdir) < 0) { step = AIBOX_SPAWN_STEP_CHDIR; goto fail; }
        sigset_t none;
        sigemptyset(&none);
        syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, _NSIG / 8);
        execve(attr->path, attr->argv, attr->envp);
        step = AIBOX_SPAWN_STEP_EXEC;
    fail:
        child_errno = errno;
        _exit(127);
    }
    int fork_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        *err_step = AIBOX_SPAWN_STEP_FORK;
        *err_errno = fork_errno;
        return -1;
    }
    if (step != AIBOX_SPAWN_STEP_NONE) {
        // The child has exited with 127; reap it here so it never shows up as a worker exit.
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        *err_step = step;
        *err_errno = child_errno;
        return -1;
    }
    return pid;
}

int aibox_set_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }

ssize_t aibox_recv_with_creds(int fd, void *buf, size_t len, pid_t *pid, uid_t *uid, gid_t *gid) {
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    union {
        struct cmsghdr align;
        char space[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int) * 16)];
    } control;
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = &control;
    msg.msg_controllen = sizeof control;
    *pid = 0;
    ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC | MSG_TRUNC);
    if (n < 0) return -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET) continue;
        if (c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len == CMSG_LEN(sizeof(struct ucred))) {
            struct ucred cred;
            memcpy(&cred, CMSG_DATA(c), sizeof cred);
            *pid = cred.pid;
            *uid = cred.uid;
            *gid = cred.gid;
        } else if (c->cmsg_type == SCM_RIGHTS) {
            // File-descriptor store is not supported: never leak what a worker sends.
            size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            int fds[16];
            if (count > 16) count = 16;
            memcpy(fds, CMSG_DATA(c), count * sizeof(int));
            for (size_t i = 0; i < count; i++) close(fds[i]);
        }
    }
    return n;
}

int aibox_peer_credentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid) {
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return -1;
    *pid = cred.pid;
    *uid = cred.uid;
    *gid = cred.gid;
    return 0;
}

int aibox_set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -1;
    return fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

int aibox_set_cloexec(int fd) {
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0) return -1;
    return fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

socklen_t aibox_sockaddr_un(struct sockaddr_un *addr, const char *path) {
    size_t len = strlen(path);
    memset(addr, 0, sizeof *addr);
    addr->sun_family = AF_UNIX;
    if (len >= sizeof addr->sun_path) return (socklen_t)-1;
    memcpy(addr->sun_path, path, len);
    if (path[0] == '@') addr->sun_path[0] = '\0';  // abstract namespace, as systemd spells it
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '@' ? 0 : 1));
}

int aibox_wifexited(int status) { return WIFEXITED(status); }
int aibox_wexitstatus(int status) { return WEXITSTATUS(status); }
int aibox_wifsignaled(int status) { return WIFSIGNALED(status); }
int aibox_wtermsig(int status) { return WTERMSIG(status); }

int aibox_accept(int fd) { return accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK); }
int aibox_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }
char *aibox_strptime(const char *s, const char *format, struct tm *tm) { return strptime(s, format, tm); }
