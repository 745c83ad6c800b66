#!/usr/bin/env bash
# Issue 3's figures, printed as Markdown: enumeration + classification (in process and as a
# command, beside udevadm and lspci) on this machine and on a large synthetic umockdev
# fixture; hotplug uevent → gated worker exec under the daemon.
#
#   Benchmarks/hardware.sh [--runs N]        (~2 min; needs umockdev, hyperfine, udev, pciutils)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=30
[ "${1:-}" = "--runs" ] && runs="$2"
swift build -c release --scratch-path .build-bench >&2
bin="$(swift build -c release --scratch-path .build-bench --show-bin-path)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$bin/aibox-bench-hardware" --write-fixture "$tmp/large.umockdev"
devices=$(grep -c '^P:' "$tmp/large.umockdev")

echo "Commit \`$(git rev-parse --short HEAD)\`; $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); release build."
echo
echo "### In process: \`HardwareProbe.scan()\` (what the daemon pays at start and after a monitor failure)"
echo
echo "| inventory | devices | median | p99 | min | libudev enumeration alone (median) |"
echo "|---|---|---|---|---|---|"
row() { # label, output of aibox-bench-hardware
  local label="$1" line="$2"
  get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $line"; }
  printf '| %s | %s | %.2f ms | %.2f ms | %.2f ms | %.2f ms |\n' "$label" "$(get devices)" "$(get median_ms)" "$(get p99_ms)" "$(get min_ms)" "$(get floor_median_ms)"
}
row "this machine" "$("$bin/aibox-bench-hardware" --iterations 500)"
largest=$(wc -l Tests/AIBoxIntegrationTests/Fixtures/*.umockdev | grep -v total | sort -n | tail -1 | awk '{print $2}')
row "largest test fixture, $(basename "$largest" .umockdev) (umockdev)" "$(umockdev-run -d "$largest" -- "$bin/aibox-bench-hardware" --iterations 300)"
row "large synthetic fixture (umockdev)" "$(umockdev-run -d "$tmp/large.umockdev" -- "$bin/aibox-bench-hardware" --iterations 100)"
if [ "$(id -u)" = 0 ]; then
  # A large inventory on the real kernel: 150 veth pairs in a private network namespace,
  # with a sysfs of its own (nothing changes outside).
  row "this machine + 300 veth interfaces (real sysfs)" "$(unshare -n -m sh -c 'mount -t sysfs sysfs /sys && for i in $(seq 1 150); do ip link add v$i type veth peer name w$i; done && exec "$0" --iterations 100' "$bin/aibox-bench-hardware")"
fi
echo
echo "### As a command, with its peers (hyperfine, wall time of the whole process)"
echo
peers=(-n "aibox hardware --json" "$bin/aibox hardware --json")
command -v udevadm >/dev/null && peers+=(-n "udevadm info --export-db" "udevadm info --export-db")
command -v lspci >/dev/null && peers+=(-n "lspci -vmm -k" "lspci -vmm -k")
hyperfine -N --warmup 5 --runs 100 --style none --export-markdown "$tmp/host.md" "${peers[@]}" >/dev/null 2>&1
echo "This machine:"
echo
cat "$tmp/host.md"
echo
if [ "$(id -u)" = 0 ]; then
  echo "This machine + 300 veth interfaces (real sysfs, private network namespace):"
  echo
  unshare -n -m sh -c 'mount -t sysfs sysfs /sys && for i in $(seq 1 150); do ip link add v$i type veth peer name w$i; done && exec hyperfine -N --warmup 3 --runs 40 --style none --export-markdown "$0" "$@"' \
    "$tmp/veth.md" "${peers[@]}" >/dev/null 2>&1
  cat "$tmp/veth.md"
  echo
fi
echo "(On the large fixture a process-level comparison measures umockdev-run's own start, about 1.5 s, and nothing else; the in-process figures above compare aibox with libudev's enumeration under the same preload.)"
echo
echo "### Hotplug: Coral uevent → exec of the worker that requires \`tpu.coral\` ($runs plugs)"
echo
echo "\`$(/usr/bin/python3 Benchmarks/hotplug.py "$bin/aibox" "$bin/aibox-example-worker" --runs "$runs")\`"
