#!/usr/bin/env bash
# Issue 9's control-socket figures, printed as Markdown: idle connections held by the daemon
# and the latency of `aibox workers` under 0, 1,000 and 5,000 of them.
#
#   Benchmarks/control-socket.sh [--calls N] [--holders 0,1000,5000]     (~1 min; python3)
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --scratch-path .build-bench --product aibox >&2
swift build -c release --scratch-path .build-bench --product aibox-example-worker >&2
bin="$(swift build -c release --scratch-path .build-bench --show-bin-path)"
exec python3 Benchmarks/control-socket.py "$bin" "$@"
