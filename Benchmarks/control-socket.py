#!/usr/bin/python3
"""The control socket under idle connections (issue 9), printed as Markdown.

For 0, 1,000 and 5,000 idle connections (connected, sending nothing) held by this
process: how many the daemon holds, the daemon's CPU while they arrive, and the wall time of
`aibox workers` (the whole command: exec, connect, answer, exit) over --calls runs.
The daemon runs on a scratch --root with two example workers, under the unit's soft
descriptor limit (1024). Run by Benchmarks/control-socket.sh, which builds the release
binaries; or directly: control-socket.py BIN_DIR.
"""
import argparse
import os
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

parser = argparse.ArgumentParser()
parser.add_argument("bin", help="directory holding aibox and aibox-example-worker")
parser.add_argument("--calls", type=int, default=50)
parser.add_argument("--holders", default="0,1000,5000")
args = parser.parse_args()
aibox = os.path.join(os.path.abspath(args.bin), "aibox")
worker = os.path.join(os.path.abspath(args.bin), "aibox-example-worker")

root = tempfile.mkdtemp(prefix="aibox-bench-control.")
os.makedirs(root + "/usr/lib/aibox/workers.d")
os.makedirs(root + "/etc/aibox")
with open(root + "/etc/aibox/box.toml", "w") as f:
    f.write('name = "bench"\n')
with open(root + "/usr/lib/aibox/workers.d/bench.toml", "w") as f:
    for name in ("one", "two"):
        f.write(f'[worker.{name}]\nexec = ["{worker}", "--no-notify", "--quiet"]\n')
sock = root + "/run/aibox/control.sock"

# Enough descriptors for the holders (the soft limit, up to the hard one).
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = max(int(n) for n in args.holders.split(",")) + 1024
if soft < want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))

log = open(root + "/daemon.log", "w")
daemon = subprocess.Popen(
    ["/usr/bin/prlimit", "--nofile=1024:", "--", aibox, "daemon", "--root", root, "--log-target", "files"],
    stdout=log, stderr=log, start_new_session=True)


def workers():
    started = time.monotonic()
    r = subprocess.run([aibox, "workers", "--root", root], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    return time.monotonic() - started, r.returncode


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def still_open(held):
    """How many of our connections the daemon has not closed (no POLLHUP on our end)."""
    p = select.poll()
    for s in held:
        p.register(s, 0)
    return len(held) - sum(1 for _, ev in p.poll(0) if ev & select.POLLHUP)


try:
    deadline = time.monotonic() + 20
    while workers()[1] != 0:
        if time.monotonic() > deadline or daemon.poll() is not None:
            sys.exit("the daemon did not come up:\n" + open(root + "/daemon.log").read())
        time.sleep(0.05)
    pid = daemon.pid
    print(f"Commit `{subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True).stdout.strip()}`; "
          f"{os.cpu_count()} CPUs; daemon at soft RLIMIT_NOFILE 1024; `aibox workers` timed {args.calls} times per row "
          "(the whole command, exec to exit).")
    print()
    print("| idle connections opened | held by the daemon | daemon CPU while they connect | `aibox workers` median | p99 | max | failed |")
    print("|---|---|---|---|---|---|---|")
    for n in (int(x) for x in args.holders.split(",")):
        cpu0 = cpu_seconds(pid)
        held = []
        while len(held) < n:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(sock)
                held.append(s)
            except BlockingIOError:  # the queue is full for a moment
                s.close()
                time.sleep(0.001)
        cpu = cpu_seconds(pid) - cpu0
        time.sleep(0.2)  # the last ones accepted
        holding = still_open(held)
        times, failed = [], 0
        for _ in range(args.calls):
            t, code = workers()
            times.append(t * 1000)
            failed += code != 0
        times.sort()
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        print(f"| {n} | {holding} | {cpu * 1000:.0f} ms | {statistics.median(times):.1f} ms | {p99:.1f} ms | {times[-1]:.1f} ms | {failed} |")
        for s in held:
            s.close()
        time.sleep(0.5)
finally:
    os.killpg(daemon.pid, signal.SIGTERM)
    try:
        daemon.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(daemon.pid, signal.SIGKILL)
        daemon.wait()
    shutil.rmtree(root, ignore_errors=True)
