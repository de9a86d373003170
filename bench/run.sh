#!/usr/bin/env bash
# run.sh - the llm-proxy vs nginx benchmark suite. A thin wrapper over run.py (see README.md):
#   bench/run.sh                              full suite: mock, nginx, llm-proxy (1 thread)
#   bench/run.sh --proxy-2t                   ... plus llm-proxy with 2 threads
#   bench/run.sh --compare BIN_A BIN_B        two llm-proxy binaries interleaved, ratios B/A
#   bench/run.sh --variant NAME:set=K=V ...   config variants of one binary
# run.py stops every process it started on exit, error, SIGINT and SIGTERM.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec python3 "$here/run.py" "$@"
