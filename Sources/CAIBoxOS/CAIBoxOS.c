#define _GNU_SOURCE
#include "CAIBoxOS.h"

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sched.h>
#include <sys/syscall.h>

#ifndef SYS_close_range
#define SYS_close_range 436
#endif

// struct clone_args of <linux/sched.h> (CLONE_ARGS_SIZE_VER2), spelled out: that header's
// macros clash with glibc's <sched.h>.
struct aibox_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};
#define AIBOX_CLONE_INTO_CGROUP 0x200000000ULL

static int move_fd(int from, int to) {
    if (from == to) {
        int flags = fcntl(from, F_GETFD);
        if (flags < 0) return -1;
        return fcntl(from, F_SETFD, flags & ~FD_CLOEXEC);
    }
    return dup2(from, to) < 0 ? -1 : 0;
}

// What the child of aibox_spawn needs; it shares our memory until exec (vfork semantics).
struct spawn_child_context {
    const aibox_spawn_attr *attr;
    int move_into_cgroup;  // the fallback for CLONE_INTO_CGROUP: the child writes itself into cgroup.procs
    volatile int *step;
    volatile int *child_errno;
};

// The child: only raw, async-signal-safe calls (glibc's setuid & co would signal the parent's
// threads, so the id changes are raw syscalls). Never returns.
static int spawn_child(void *arg) {
    struct spawn_child_context *c = arg;
    const aibox_spawn_attr *attr = c->attr;
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        sigaction(sig, &dfl, NULL);
    }
    if (c->move_into_cgroup) {
        int procs = openat(attr->cgroup_fd, "cgroup.procs", O_WRONLY | O_CLOEXEC);
        if (procs < 0 || write(procs, "0", 1) != 1) { *c->step = AIBOX_SPAWN_STEP_CGROUP; goto fail; }
        close(procs);
    }
    if (setsid() < 0) { *c->step = AIBOX_SPAWN_STEP_SETSID; goto fail; }
    int in = attr->stdin_fd, out = attr->stdout_fd, err = attr->stderr_fd;
    // Keep sources clear of the targets before overwriting 0, 1, 2.
    if (out == 0) { out = fcntl(out, F_DUPFD, 3); }
    if (err == 0 || err == 1) { err = fcntl(err, F_DUPFD, 3); }
    if (in < 0 || out < 0 || err < 0) { *c->step = AIBOX_SPAWN_STEP_DUP; goto fail; }
    if (move_fd(in, 0) < 0 || move_fd(out, 1) < 0 || move_fd(err, 2) < 0) { *c->step = AIBOX_SPAWN_STEP_DUP; goto fail; }
    if (syscall(SYS_close_range, 3U, ~0U, 0U) < 0) {
        // Before Linux 5.9: one by one, up to the limit (getrlimit is a raw syscall too).
        long max_fd = 65536;
        struct rlimit nofile;
        if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY) max_fd = (long)nofile.rlim_cur;
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
        if (syscall(SYS_setgroups, attr->ngroups, attr->groups) < 0) { *c->step = AIBOX_SPAWN_STEP_GROUPS; goto fail; }
        if (syscall(SYS_setresgid, attr->gid, attr->gid, attr->gid) < 0) { *c->step = AIBOX_SPAWN_STEP_GID; goto fail; }
        if (syscall(SYS_setresuid, attr->uid, attr->uid, attr->uid) < 0) { *c->step = AIBOX_SPAWN_STEP_UID; goto fail; }
    }
    if (attr->workdir != NULL && chdir(attr->workdir) < 0) { *c->step = AIBOX_SPAWN_STEP_CHDIR; goto fail; }
    sigset_t none;
    sigemptyset(&none);
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, _NSIG / 8);
    execve(attr->path, attr->argv, attr->envp);
    *c->step = AIBOX_SPAWN_STEP_EXEC;
fail:
    *c->child_errno = errno;
    _exit(127);
}

#if defined(__x86_64__) || defined(__aarch64__)
// clone3 with vfork semantics (CLONE_VM | CLONE_VFORK) on a stack of the child's own, so that
// CLONE_INTO_CGROUP puts the child into its cgroup as it is made: no write to cgroup.procs,
// which would take the cgroup core's global lock for every respawn. glibc (before 2.39's
// posix_spawnattr_setcgroup_np) has no wrapper; the child cannot return from a C syscall
// wrapper on a new stack, so it calls `fn(arg)` here and exits with its result.
// Returns the pid, or -errno.
#define AIBOX_HAVE_CLONE3 1
long aibox_clone3_vfork(struct aibox_clone_args *args, size_t size, int (*fn)(void *), void *arg)
    __attribute__((visibility("hidden")));
#if defined(__x86_64__)
__asm__(".pushsection .text\n"
        ".globl aibox_clone3_vfork\n"
        ".hidden aibox_clone3_vfork\n"
        ".type aibox_clone3_vfork, @function\n"
        "aibox_clone3_vfork:\n"
        "    mov %rdx, %r8\n"       // fn and arg survive the syscall in r8 and r9
        "    mov %rcx, %r9\n"
        "    mov $435, %eax\n"      // SYS_clone3
        "    syscall\n"
        "    test %rax, %rax\n"
        "    jnz 1f\n"
        "    xor %ebp, %ebp\n"      // the child, on its own stack: no frame to return to
        "    mov %r9, %rdi\n"
        "    call *%r8\n"
        "    mov %eax, %edi\n"
        "    mov $60, %eax\n"       // SYS_exit
        "    syscall\n"
        "    hlt\n"
        "1:  ret\n"
        ".size aibox_clone3_vfork, .-aibox_clone3_vfork\n"
        ".popsection\n");
#else
__asm__(".pushsection .text\n"
        ".globl aibox_clone3_vfork\n"
        ".hidden aibox_clone3_vfork\n"
        ".type aibox_clone3_vfork, %function\n"
        "aibox_clone3_vfork:\n"
        "    mov x9, x2\n"          // fn and arg survive the syscall in x9 and x10
        "    mov x10, x3\n"
        "    mov x8, #435\n"        // SYS_clone3
        "    svc #0\n"
        "    cbnz x0, 1f\n"
        "    mov x29, xzr\n"        // the child, on its own stack: no frame to return to
        "    mov x30, xzr\n"
        "    mov x0, x10\n"
        "    blr x9\n"
        "    mov x8, #93\n"         // SYS_exit
        "    svc #0\n"
        "    brk #0\n"
        "1:  ret\n"
        ".size aibox_clone3_vfork, .-aibox_clone3_vfork\n"
        ".popsection\n");
#endif
#endif

pid_t aibox_spawn(const aibox_spawn_attr *attr, int *err_step, int *err_errno) {
    // Written by the child, read by the parent: they share memory until exec.
    volatile int step = AIBOX_SPAWN_STEP_NONE;
    volatile int child_errno = 0;

    struct spawn_child_context ctx = {.attr = attr, .move_into_cgroup = 0, .step = &step, .child_errno = &child_errno};

    // Block every signal across the clone so that no handler of ours runs in the child.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);

    pid_t pid = -1;
    int fork_errno = 0;
    int cloned = 0;
#ifdef AIBOX_HAVE_CLONE3
    if (attr->use_cgroup && !attr->cgroup_by_write) {
        // The child's stack, in this frame: we are suspended until it execs or exits.
        enum { stack_size = 32 * 1024 };
        char stack[stack_size] __attribute__((aligned(64)));
        struct aibox_clone_args args;
        memset(&args, 0, sizeof args);
        args.flags = CLONE_VM | CLONE_VFORK | AIBOX_CLONE_INTO_CGROUP;
        args.exit_signal = SIGCHLD;
        args.stack = (uint64_t)(uintptr_t)stack;
        args.stack_size = stack_size;
        args.cgroup = (uint64_t)attr->cgroup_fd;
        long r = aibox_clone3_vfork(&args, sizeof args, spawn_child, &ctx);
        if (r >= 0) {
            pid = (pid_t)r;
            cloned = 1;
        } else if (r != -ENOSYS && r != -E2BIG && r != -EPERM) {
            // A seccomp filter may refuse clone3 (ENOSYS, EPERM); an old kernel has no
            // CLONE_INTO_CGROUP (E2BIG): those fall back below. Anything else is the answer.
            fork_errno = (int)-r;
            cloned = -1;
        }
    }
#endif
    if (cloned == 0) {
        ctx.move_into_cgroup = attr->use_cgroup;
        pid = vfork();
        if (pid == 0) spawn_child(&ctx);
        fork_errno = errno;
    }
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

int aibox_cgroup_events_open(int dirfd, const char *path) {
    char file[512];
    int n = snprintf(file, sizeof file, "%s/cgroup.events", path);
    if (n < 0 || (size_t)n >= sizeof file) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return openat(dirfd, file, O_RDONLY | O_CLOEXEC);
}

int aibox_cgroup_populated_fd(int fd) {
    char text[256];
    ssize_t got;
    // From offset 0: kernfs makes the text anew for each read there, so one descriptor serves every check.
    do { got = pread(fd, text, sizeof text - 1, 0); } while (got < 0 && errno == EINTR);
    if (got < 0) return -1;
    text[got] = '\0';
    const char *line = strstr(text, "populated ");
    if (line == NULL) {
        errno = EINVAL;
        return -1;
    }
    return line[10] == '1' ? 1 : 0;
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

int aibox_peek_exited(pid_t pid, int *code, int *signal) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    int r;
    do { r = waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT); } while (r < 0 && errno == EINTR);
    if (r < 0) return -1;
    if (info.si_pid != pid) return 0;  /* WNOHANG: not exited (yet) */
    if (info.si_code == CLD_EXITED) {
        *code = info.si_status;
        *signal = 0;
    } else {
        *code = -1;
        *signal = info.si_status;
    }
    return 1;
}
int aibox_wtermsig(int status) { return WTERMSIG(status); }

int aibox_accept(int fd) { return accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK); }
int aibox_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }
char *aibox_strptime(const char *s, const char *format, struct tm *tm) { return strptime(s, format, tm); }
