#!/usr/bin/env bash
# tracing.sh - instructions per request with tracing off, on at sample_ratio 0, and on at 1.0
# (every request exported, JSON and protobuf), through bench/callgrind.sh on one binary.
#
#   bench/tracing.sh [-n REQUESTS] [--stream] [--build DIR]
#
# A small OTLP/HTTP receiver (python, outside valgrind) answers 200 to every export; the
# exporter's default batching applies (5 s / 512 spans), so the exports happen inside the run.
# Prints the callgrind.sh summary line of each configuration, then the relative costs.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
args=()
while [ $# -gt 0 ]; do
    case "$1" in
    -n|--build) args+=("$1" "$2"); shift 2 ;;
    --stream) args+=("$1"); shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
tmp=$(mktemp -d /tmp/lp-tracing-XXXXXX)
python3 - "$tmp/port" <<'PY' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
open(sys.argv[1], "w").write(str(s.server_address[1]))
s.serve_forever()
PY
collector=$!
trap 'kill $collector 2>/dev/null || true; rm -rf "$tmp"' EXIT
for _ in $(seq 50); do [ -s "$tmp/port" ] && break; sleep 0.1; done
port=$(cat "$tmp/port")
printf 'tracing: {enabled: true, otlp_endpoint: "http://127.0.0.1:%s", sample_ratio: 0}\n' "$port" >"$tmp/ratio0.yaml"
printf 'tracing: {enabled: true, otlp_endpoint: "http://127.0.0.1:%s", sample_ratio: 1.0}\n' "$port" >"$tmp/ratio1.yaml"
printf 'tracing: {enabled: true, otlp_endpoint: "http://127.0.0.1:%s", sample_ratio: 1.0, otlp_protocol: http/protobuf}\n' \
    "$port" >"$tmp/ratio1-protobuf.yaml"
declare -A ir
for cfg in off ratio0 ratio1 ratio1-protobuf; do
    extra=()
    [ "$cfg" = off ] || extra=(--extra "$tmp/$cfg.yaml")
    out=$("$here/callgrind.sh" "${args[@]}" "${extra[@]}" --top 12)
    echo "=== tracing $cfg"
    echo "$out"
    ir[$cfg]=$(echo "$out" | sed -nE 's/^=> ([0-9,]+) instructions per request.*/\1/p' | tr -d ,)
done
echo "=== summary (instructions per request, all threads)"
for cfg in off ratio0 ratio1 ratio1-protobuf; do
    python3 -c "import sys; o,v=int(sys.argv[1]),int(sys.argv[2]); print(f'{sys.argv[3]:>15}: {v:>9,}  ({100*(v-o)/o:+.2f}% vs off)')" \
        "${ir[off]}" "${ir[$cfg]}" "$cfg"
done
