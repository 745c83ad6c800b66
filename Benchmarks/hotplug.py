#!/usr/bin/python3
# Hotplug event to gated worker exec: the time from the uevent of a Coral USB stick (sent
# through libumockdev's testbed API) to the first instruction of the worker that requires
# `tpu.coral` (the example worker stamps CLOCK_MONOTONIC first thing), under the real daemon.
#
#   Benchmarks/hotplug.py AIBOX_BIN WORKER_BIN [--runs N]
#
# Each run plugs the stick, waits for the worker's stamp, pulls the stick and waits for the
# worker to be stopped (after the daemon's 2 s grace period for vanished devices).
import os
import shutil
import subprocess
import sys
import tempfile
import time

if "libumockdev-preload" not in os.environ.get("LD_PRELOAD", ""):
    os.environ["LD_PRELOAD"] = "libumockdev-preload.so.0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

import gi  # noqa: E402

gi.require_version("UMockdev", "1.0")
from gi.repository import UMockdev  # noqa: E402

aibox, worker = sys.argv[1], sys.argv[2]
runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 30

root = tempfile.mkdtemp(prefix="aibox-hotplug-bench-")
stamps, exits = root + "/starts", root + "/exits"
os.makedirs(root + "/usr/lib/aibox/workers.d")
# As after first boot: without box.toml the daemon is in setup mode and starts no worker.
os.makedirs(root + "/etc/aibox")
with open(root + "/etc/aibox/box.toml", "w") as f:
    f.write('name = "bench"\n')
with open(root + "/usr/lib/aibox/workers.d/coral.toml", "w") as f:
    f.write(f'''[worker.coral-agent]
exec = ["{worker}", "--no-notify", "--quiet", "--stamp", "{stamps}", "--exit-stamp", "{exits}"]
requires-hardware = ["tpu.coral"]
stop-timeout = "2s"
''')

testbed = UMockdev.Testbed.new()
env = dict(os.environ, UMOCKDEV_DIR=testbed.get_root_dir(), LD_PRELOAD="libumockdev-preload.so.0")
env.pop("NOTIFY_SOCKET", None)
daemon = subprocess.Popen([aibox, "daemon", "--root", root, "--log-target", "files"], env=env,
                          stdout=subprocess.DEVNULL, stderr=open(root + "/daemon.log", "w"))


def lines(path):
    try:
        with open(path) as f:
            return [line.split() for line in f if line.strip()]
    except FileNotFoundError:
        return []


def wait_for(path, count, what, bound=15.0):
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        got = lines(path)
        if len(got) >= count:
            return got
        time.sleep(0.001)
    raise SystemExit(f"timed out waiting for {what}; daemon log in {root}/daemon.log")


# Up: the control socket answers.
deadline = time.monotonic() + 20
while subprocess.run([aibox, "status", "--root", root], capture_output=True).returncode != 0:
    if time.monotonic() > deadline:
        raise SystemExit("daemon did not start")
    time.sleep(0.02)

latencies = []
try:
    for i in range(runs):
        syspath = testbed.add_device(
            "usb", "usb1/1-1", None, ["idVendor", "1a6e", "idProduct", "089a"],
            ["DEVTYPE", "usb_device", "ID_VENDOR_ID", "1a6e", "ID_MODEL_ID", "089a",
             "ID_PATH", "pci-0000:00:14.0-usb-0:1", "ID_BUS", "usb"])
        t0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        testbed.uevent(syspath, "add")
        started = wait_for(stamps, i + 1, "the worker's start")
        latencies.append((int(started[-1][0]) - t0) / 1e6)
        testbed.uevent(syspath, "remove")
        testbed.remove_device(syspath)
        wait_for(exits, i + 1, "the worker's stop")
finally:
    daemon.terminate()
    daemon.wait()
    shutil.rmtree(root, ignore_errors=True)

latencies.sort()


def pct(p):
    return latencies[max(0, min(len(latencies) - 1, int(-(-p * len(latencies) // 1)) - 1))]


print(f"runs={len(latencies)} median_ms={pct(0.5):.2f} p90_ms={pct(0.9):.2f} max_ms={latencies[-1]:.2f} min_ms={latencies[0]:.2f}")
