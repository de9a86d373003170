#!/usr/bin/env bash
# callgrind.sh - deterministic cost of llm-proxy: instructions per request under callgrind.
#
#   bench/callgrind.sh [-n REQUESTS] [--stream] [--build DIR] [--bin PATH] [--top K]
#                      [--extra FILE.yaml] [--keep]
#
# Starts llm-mock (pinned to CPU 1) and llm-proxy (1 worker thread) under
# `valgrind --tool=callgrind`, sends 100 warm-up requests, zeroes the counters, sends REQUESTS
# (default 2000) requests one after another over one keep-alive connection (c=1), dumps the
# counters and prints: total Ir (instructions executed, all threads) / requests, and the top K
# (default 15) functions by self and by inclusive cost, each also per request.
# Unlike wall-clock numbers this barely moves with machine load, so it is the number to compare
# before/after a change (run it for both binaries with --bin).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
n=2000
mode=json
build="$root/build-bench"
bin=""
top=15
extra=""
keep=0
while [ $# -gt 0 ]; do
    case "$1" in
    -n) n=$2; shift 2 ;;
    --stream) mode=stream; shift ;;
    --build) build=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --top) top=$2; shift 2 ;;
    --extra) extra=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
bin=${bin:-$build/llm-proxy}
for f in "$bin" "$build/llm-mock"; do
    [ -x "$f" ] || { echo "not executable: $f (see bench/README.md for the build line)" >&2; exit 2; }
done
for t in valgrind callgrind_control callgrind_annotate python3; do
    command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 2; }
done

tmp=$(mktemp -d /tmp/lp-callgrind-XXXXXX)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    if [ "$keep" = 1 ]; then echo "kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_port FILE REGEX SECONDS: print the first capture group once FILE matches.
wait_port() {
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        if grep -qE "$2" "$1" 2>/dev/null; then
            sed -nE "s/.*$2.*/\1/p" "$1" | head -1
            return 0
        fi
        sleep 0.1
    done
    echo "timed out waiting for $1" >&2
    cat "$1" >&2 || true
    return 1
}

taskset -c 1 "$build/llm-mock" --listen 127.0.0.1:0 --chunks 8 --chunk-interval-ms 0 --quiet \
    >"$tmp/mock.out" 2>&1 &
pids+=($!)
mock_port=$(wait_port "$tmp/mock.out" 'listening on [^ ]*:([0-9]+)$' 5)

key=sk-bench-proxy-key-0123456789abcdef
cat >"$tmp/proxy.yaml" <<EOF
listen: "127.0.0.1:0"
proxy_api_key: "$key"
server: {threads: 1}
backends:
  - {name: mock, url: "http://127.0.0.1:$mock_port/v1", api_key: "sk-bench-backend-key-0123456789abcdef"}
models:
  bench-model:
    routes:
      - {backend: mock, model: gpt-4o-mini, priority: 1}
fallback: {when_all_cooling: try_soonest}
logging: {level: info, access_log: /dev/null, error_log: "$tmp/proxy-error.log"}
EOF
[ -n "$extra" ] && cat "$extra" >>"$tmp/proxy.yaml"

taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" \
    "$bin" -config "$tmp/proxy.yaml" >"$tmp/proxy.stderr" 2>&1 &
vg_pid=$!
pids=("$vg_pid" "${pids[@]}")   # stop the proxy before the mock
proxy_port=$(wait_port "$tmp/proxy.stderr" 'listening on [^ ]*:([0-9]+) with' 60)

# client N: N sequential requests on one keep-alive connection; every one must be a 200
# with a complete body.
client() {
    python3 - "$proxy_port" "$1" "$mode" "$key" <<'PY'
import http.client, json, sys
port, n, mode, key = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
body = json.dumps({"model": "bench-model", "stream": mode == "stream", "max_tokens": 64,
                   "messages": [{"role": "system", "content": "You are a benchmark."},
                                {"role": "user", "content": "Say hello in one short sentence, please."}]})
hdrs = {"Content-Type": "application/json", "Authorization": "Bearer " + key}
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
bad = 0
for i in range(n):
    c.request("POST", "/v1/chat/completions", body, hdrs)
    r = c.getresponse()
    data = r.read()
    want = b"data: [DONE]" if mode == "stream" else b'"choices"'
    if r.status != 200 or want not in data:
        bad += 1
        if bad == 1:
            print(f"request {i}: status {r.status}: {data[:300]!r}", file=sys.stderr)
sys.exit(1 if bad else 0)
PY
}

client 100 || { echo "warm-up failed" >&2; exit 1; }
callgrind_control -z "$vg_pid" >/dev/null
t0=$(date +%s.%N)
client "$n" || { echo "some of the $n measured requests failed" >&2; exit 1; }
t1=$(date +%s.%N)
callgrind_control -d "$vg_pid" >/dev/null
dump=$(ls -t "$tmp"/cg.out.* 2>/dev/null | head -1)
[ -n "$dump" ] || { echo "no callgrind dump found" >&2; exit 1; }

total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
echo "llm-proxy under callgrind: $bin"
echo "mode $mode, $n requests at c=1 on one keep-alive connection (after 100 warm-up requests)," \
     "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}') s under valgrind"
echo "total Ir $total  =>  $(awk -v t="$total" -v n="$n" 'BEGIN {printf "%.0f", t / n}') instructions per request"

# annotate KIND: the top functions of the dump, with Ir per request added.
annotate() {
    callgrind_annotate --inclusive="$1" --threshold=100 "$dump" 2>/dev/null |
        awk -v n="$n" -v top="$top" '
            /^-+$/ { dashes++; next }
            dashes >= 3 && /^ *[0-9,]+ / {
                ir = $1; gsub(",", "", ir)
                if (seen++ < top) {
                    $1 = ""; sub(/^ +/, "")
                    printf "%14d  %9.0f/req  %5.1f%%  %s\n", ir, ir / n, 100 * ir / total, $0
                }
            }' total="$total"
}
echo
echo "top $top functions by self cost (Ir, Ir/request, share, function):"
annotate no
echo
echo "top $top functions by inclusive cost:"
annotate yes
