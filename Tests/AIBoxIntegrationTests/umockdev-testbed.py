#!/usr/bin/python3
# Test helper: runs the command after "--" inside a umockdev testbed (libumockdev-preload,
# UMOCKDEV_DIR), then plugs and pulls fake devices as told on stdin, one command a line,
# answering "ok" for each. umockdev-run cannot send uevents to a running program; the
# testbed API can. Exits with the command's exit status.
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

# The testbed's uevent sender looks devices up through the preloaded libudev: run under it.
if "libumockdev-preload" not in os.environ.get("LD_PRELOAD", ""):
    os.environ["LD_PRELOAD"] = "libumockdev-preload.so.0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

import gi

gi.require_version("UMockdev", "1.0")
from gi.repository import UMockdev  # noqa: E402

testbed = UMockdev.Testbed.new()
# TESTBED_EXTRA_PRELOAD: another library preloaded into the command (a test double).
preload = " ".join(filter(None, ["libumockdev-preload.so.0", os.environ.get("TESTBED_EXTRA_PRELOAD")]))
env = dict(os.environ, UMOCKDEV_DIR=testbed.get_root_dir(), LD_PRELOAD=preload)
child = subprocess.Popen(sys.argv[sys.argv.index("--") + 1:], env=env)


def exit_with_child():
    """Exits as the command did (128 + N for a signal); never leaves it behind, orphaned."""
    code = child.wait()
    shutil.rmtree(testbed.get_root_dir(), ignore_errors=True)  # os._exit skips the testbed's own cleanup
    os._exit(code if code >= 0 else 128 - code)


threading.Thread(target=exit_with_child, daemon=True).start()
# SIGTERM and SIGINT go on to the command: stopping this launcher stops what it runs. The
# test runner's threads block signals, and a blocked mask survives exec: unblock them.
signal.pthread_sigmask(signal.SIG_SETMASK, [])
for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, lambda signum, frame: child.send_signal(signum))

CORAL_PATH = "pci-0000:00:14.0-usb-0:1"
devices = {}


def usb(name, vendor, product):
    return testbed.add_device(
        "usb", "usb1/1-1", None,
        ["idVendor", vendor, "idProduct", product],
        ["DEVTYPE", "usb_device", "ID_VENDOR_ID", vendor, "ID_MODEL_ID", product, "ID_PATH", CORAL_PATH, "ID_BUS", "usb"])


def plug(name, syspath):
    devices[name] = syspath
    testbed.uevent(syspath, "add")


def pull(name):
    syspath = devices.pop(name)
    testbed.uevent(syspath, "remove")
    testbed.remove_device(syspath)


def stick(image=None, fs="vfat"):
    """A USB stick with a file system labelled AIBOX; its contents from `image`."""
    if image:
        # The node's contents (what reading /dev/sdb1 gives under the preload), in place
        # before the device exists: adding it may already announce it.
        os.makedirs(os.path.join(testbed.get_root_dir(), "dev"), exist_ok=True)
        shutil.copyfile(image, os.path.join(testbed.get_root_dir(), "dev", "sdb1"))
    disk = testbed.add_device(
        "block", "sdb", None, ["removable", "1", "size", "16384", "dev", "8:16"],
        ["DEVTYPE", "disk", "DEVNAME", "/dev/sdb", "ID_BUS", "usb"])
    part = testbed.add_device(
        "block", "sdb1", disk, ["partition", "1", "dev", "8:17"],
        ["DEVTYPE", "partition", "DEVNAME", "/dev/sdb1", "ID_BUS", "usb", "ID_FS_LABEL", "AIBOX", "ID_FS_TYPE", fs])
    plug("stick", disk)
    plug("stick1", part)


for line in sys.stdin:
    command, _, argument = line.strip().partition(" ")
    if command == "coral-boot":  # the Coral USB as it first appears
        plug("coral", usb("coral", "1a6e", "089a"))
    elif command == "coral-firmware":  # after its firmware load it re-enumerates with other ids
        pull("coral")
        time.sleep(0.5)  # a real stick is gone for about this long while it reboots
        plug("coral", usb("coral", "18d1", "9302"))
    elif command == "coral-unplug":
        pull("coral")
    elif command == "stick":  # an empty AIBOX stick, or "stick IMAGE [FSTYPE]"
        stick(*argument.split()) if argument else stick()
    elif command == "stick-copy":  # the stick's current image copied to the path given
        shutil.copyfile(os.path.join(testbed.get_root_dir(), "dev", "sdb1"), argument)
    elif command == "stick-unplug":
        pull("stick1")
        pull("stick")
    elif command == "camera":
        plug("camera", testbed.add_device(
            "video4linux", "video0", None, ["name", "cam"], ["ID_V4L_CAPABILITIES", ":capture:"]))
    else:
        os.write(1, ("unknown command " + command + "\n").encode())
        continue
    # One write(2): the program under test shares this pipe, and a line split in two writes
    # can be interleaved with its output.
    os.write(1, b"ok\n")

# Input closed: the command goes on until it ends (or is signalled through us).
exit_with_child()
