#!/usr/bin/env bash
# Issue 5's figures, printed as Markdown: install throughput into an image-file slot beside
# this machine's limit for the same work (cp of the payload, then sha256sum of the copy),
# and the time to verify a bundle — all on the same file system, in the same run.
#
#   Benchmarks/update.sh [--size MiB] [--runs N]      (default 1024 MiB, 5 runs; ~3 min)
set -euo pipefail
cd "$(dirname "$0")/.."
size=1024 runs=5
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    *) echo "usage: $0 [--size MiB] [--runs N]" >&2; exit 2 ;;
  esac
done
swift build -c release --scratch-path .build-bench >&2
bin="$(swift build -c release --scratch-path .build-bench --show-bin-path)"
work="$(mktemp -d "${TMPDIR:-/var/tmp}/aibox-update-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root/usr/lib/aibox/keys" "$root/var/lib/aibox/slots"
cat > "$root/usr/lib/aibox/system.toml" <<TOML
compatible = "aibox-bench"
bootloader = "file"
[slot.A]
device = "/var/lib/aibox/slots/A.img"
[slot.B]
device = "/var/lib/aibox/slots/B.img"
TOML
"$bin/aibox" bundle keygen --private "$work/key.pem" --public "$root/usr/lib/aibox/keys/bench.pub" >/dev/null
head -c $((size << 20)) /dev/urandom > "$work/rootfs.img"
"$bin/aibox" bundle create --compatible aibox-bench --version 1.0.0 --image rootfs="$work/rootfs.img" \
  --key "$work/key.pem" --output "$work/u.aibox" >/dev/null

echo "Commit \`$(git rev-parse --short HEAD)\`; $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(df -T "$work" | awk 'NR==2 {print $2}') at $work; release build; payload ${size} MiB; page cache warm for all (the bundle and image are read once before)."
echo
cat "$work/u.aibox" "$work/rootfs.img" > /dev/null
hyperfine -N --runs "$runs" --warmup 1 --style none --export-json "$work/h.json" --export-markdown "$work/h.md" \
  -n "aibox update install (stream, hash, write, fsync, read back, hash)" "$bin/aibox update install $work/u.aibox --root $root" \
  -n "cp + sha256sum (the limit as the issue names it)" "sh -c 'cp $work/rootfs.img $work/copy.img && sha256sum $work/copy.img'" \
  -n "cp + fsync + sha256sum" "sh -c 'cp $work/rootfs.img $work/copy.img && sync $work/copy.img && sha256sum $work/copy.img'" \
  -n "aibox bundle verify (signature + payload hash)" "$bin/aibox bundle verify $work/u.aibox --keyring $root/usr/lib/aibox/keys" \
  >/dev/null 2>&1
cat "$work/h.md"
echo
python3 - "$work/h.json" "$size" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
mib = float(sys.argv[2])
t = {x["command"]: x["median"] for x in r}
names = list(t)
install, cp, cpsync, verify = (t[n] for n in names)
print(f"Throughput (median): install {mib / install:.0f} MiB/s; cp + sha256sum {mib / cp:.0f} MiB/s "
      f"→ **{cp / install:.2f}** of the limit; against cp + fsync + sha256sum **{cpsync / install:.2f}**.")
print(f"Verify a {mib:.0f} MiB bundle: **{verify:.2f} s** ({mib / verify:.0f} MiB/s).")
PY
