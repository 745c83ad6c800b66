#ifndef AIBOX_CAIBOXOS_H
#define AIBOX_CAIBOXOS_H

#include <sys/types.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <sys/inotify.h>
#include <time.h>

/// What `aibox_spawn` needs; everything is prepared by the caller before the fork,
/// because the child may only make async-signal-safe calls.
typedef struct {
    const char *path;            ///< absolute path of the program (execve, no PATH search)
    char *const *argv;
    char *const *envp;
    const char *workdir;         ///< NULL: stay in the parent's directory
    int stdin_fd;                ///< becomes fd 0
    int stdout_fd;               ///< becomes fd 1
    int stderr_fd;               ///< becomes fd 2
    int drop_privileges;         ///< nonzero: setgroups/setresgid/setresuid below
    uid_t uid;
    gid_t gid;
    const gid_t *groups;
    size_t ngroups;
    int reset_oom_score_adj;     ///< nonzero: write 0 to /proc/self/oom_score_adj (the supervisor's shield is not the workers')
    int use_cgroup;              ///< nonzero: start the child in the cgroup `cgroup_fd` (a directory of the cgroup v2 tree)
    int cgroup_fd;
    int cgroup_by_write;         ///< nonzero: by a write to cgroup.procs, not CLONE_INTO_CGROUP (see Spawner)
} aibox_spawn_attr;

/// The step of the child's setup that failed (reported with its errno).
enum {
    AIBOX_SPAWN_STEP_NONE = 0,
    AIBOX_SPAWN_STEP_SETSID = 1,
    AIBOX_SPAWN_STEP_DUP = 2,
    AIBOX_SPAWN_STEP_GROUPS = 3,
    AIBOX_SPAWN_STEP_GID = 4,
    AIBOX_SPAWN_STEP_UID = 5,
    AIBOX_SPAWN_STEP_CHDIR = 6,
    AIBOX_SPAWN_STEP_EXEC = 7,
    AIBOX_SPAWN_STEP_FORK = 8,
    AIBOX_SPAWN_STEP_CGROUP = 9,
};

/// vfork + exec in a new session (so a new process group, whose id is the pid), with
/// default signal dispositions, an empty signal mask and no descriptor but 0, 1, 2. With
/// `use_cgroup`, the child is made in that cgroup (clone3 with CLONE_INTO_CGROUP; where a
/// seccomp filter refuses clone3, vfork and a write of the child to cgroup.procs).
/// Returns the pid, or -1 with *err_step and *err_errno set; the child never runs
/// caller code, and a failed exec is reported here rather than as an exit status.
pid_t aibox_spawn(const aibox_spawn_attr *attr, int *err_step, int *err_errno);

/// Opens `path`/cgroup.events (`path` relative to `dirfd`) for reading; -1 with errno.
int aibox_cgroup_events_open(int dirfd, const char *path);
/// The `populated` line of the cgroup.events open as `fd`, read from offset 0: 1 when a
/// process is in that cgroup or below, 0 when none, -1 (errno) when it cannot be read. In C:
/// it runs on every exit of a worker, before its restart.
int aibox_cgroup_populated_fd(int fd);

/// prctl(PR_SET_CHILD_SUBREAPER, 1): orphaned descendants are reparented to us.
int aibox_set_child_subreaper(void);

/// recvmsg with SO_PASSCRED credentials; any passed descriptors are closed.
/// Returns the byte count or -1 (errno). *pid is 0 when no credentials came.
ssize_t aibox_recv_with_creds(int fd, void *buf, size_t len, pid_t *pid, uid_t *uid, gid_t *gid);

/// getsockopt(SO_PEERCRED).
int aibox_peer_credentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid);

/// fcntl(F_SETFL, flags | O_NONBLOCK) and fcntl(F_SETFD, FD_CLOEXEC).
int aibox_set_nonblocking(int fd);
int aibox_set_cloexec(int fd);

/// Fill a sockaddr_un; returns its length, or -1 when the path does not fit.
socklen_t aibox_sockaddr_un(struct sockaddr_un *addr, const char *path);

/// pipe2(fds, O_CLOEXEC).
int aibox_pipe_cloexec(int fds[2]);

/// strptime (needs _GNU_SOURCE, which the Swift importer does not set).
char *aibox_strptime(const char *s, const char *format, struct tm *tm);

/// accept4 with SOCK_CLOEXEC | SOCK_NONBLOCK.
int aibox_accept(int fd);

/// WIFEXITED & co are macros.
int aibox_wifexited(int status);
int aibox_wexitstatus(int status);
int aibox_wifsignaled(int status);
/// Whether child `pid` has exited, without reaping it (waitid WNOWAIT): 1 and its exit code
/// (or -1) and signal (or 0), 0 when it has not, -1 with errno (ECHILD: not a child, or reaped).
int aibox_peek_exited(pid_t pid, int *code, int *signal);
int aibox_wtermsig(int status);

/// One NVIDIA GPU's memory as NVML reports it; pci_address like "0000:01:00.0".
struct aibox_gpu_memory {
    char pci_address[16];
    unsigned long long total_bytes;
};

/// Loads libnvidia-ml.so.1 when present and fills `out` with up to `capacity` GPUs.
/// Returns how many, or -1 when there is no NVML (no NVIDIA driver) or it failed to start.
int aibox_nvml_memory(struct aibox_gpu_memory *out, int capacity);

/// crypt(3) with yescrypt and a fresh salt into `out`; 0, or -1 when it cannot.
int aibox_hash_password(const char *password, char *out, size_t out_size);

/// Attaches `backing_fd` (an image file) to a free loop device, whose path goes to `device`.
/// Returns the loop device's descriptor (close it after mounting), or -1 (errno).
int aibox_loop_attach(int backing_fd, int read_only, char *device, size_t device_size);

/// The size of a block device in bytes (BLKGETSIZE64); 0, or -1 (errno).
int aibox_block_device_size(int fd, unsigned long long *bytes);

/// 1 while the kernel says the wall clock is not synchronized (adjtimex(2) TIME_ERROR: no
/// NTP sync since boot), 0 when it is; -1 (errno) when that cannot be read.
int aibox_clock_unsynchronized(void);

/// Receives downloaded bytes; returns `len` to go on, anything else to stop the transfer.
typedef size_t (*aibox_http_sink)(const void *data, size_t len, void *context);

struct aibox_http_result {
    long status;          // the HTTP status (0 when none came)
    long long received;   // bytes the sink took in this call
    int curl_code;        // libcurl's result code (0: the transfer completed)
    int range_ignored;    // a resumed request got the whole file (200, not 206)
    char error[256];
};

/// GET `url` from byte `offset` (a Range request when > 0) into `sink`, through libcurl
/// loaded at run time (http and https only, redirects followed, a stall of `stall_timeout`
/// seconds cuts the transfer; `ca_file`, when not NULL, is the only CA trusted for https).
/// 0: complete; 1: failed or cut (see `result`); -1: no libcurl.
int aibox_http_get(const char *url, unsigned long long offset, long connect_timeout, long stall_timeout, const char *user_agent,
                   const char *ca_file, aibox_http_sink sink, void *context, struct aibox_http_result *result);

#endif
