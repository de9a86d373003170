#!/usr/bin/env bash
# callgrind.sh - deterministic cost of llm-proxy: instructions per request under callgrind.
#
#   bench/callgrind.sh [-n REQUESTS] [--stream] [--build DIR] [--bin PATH] [--top K]
#                      [--extra FILE.yaml] [--access-log PATH|off] [--keep] [--http2]
#
# --http2 sets `http2: true` on the backend: the libcurl engine instead of the own client.
# LP_BENCH_CLIENT_KEY=K presents K instead of the proxy key (a client key from --extra's keys).
# Starts llm-mock (pinned to CPU 1) and runs llm-proxy (1 worker thread, CPU 0) twice under
# `valgrind --tool=callgrind`: start, 100 warm-up requests, then REQUESTS (default 2000) more
# requests or none, then SIGTERM. The requests go one after another over one keep-alive
# connection (c=1). The difference of the two runs is the cost of the REQUESTS alone; it prints
# Ir (instructions executed, all threads) per request and the top K (default 15) functions by
# self and by inclusive cost, per request. Unlike wall-clock numbers this does not move with
# machine load, so it is the number to compare before/after a change (--bin for each build).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
n=2000
mode=json
build="$root/build-bench"
bin=""
top=15
extra=""
access_log=/dev/null
keep=0
http2=""
while [ $# -gt 0 ]; do
    case "$1" in
    -n) n=$2; shift 2 ;;
    --stream) mode=stream; shift ;;
    --build) build=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --top) top=$2; shift 2 ;;
    --extra) extra=$2; shift 2 ;;
    --access-log) access_log=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --http2) http2=", http2: true"; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
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
  - {name: mock, url: "http://127.0.0.1:$mock_port/v1", api_key: "sk-bench-backend-key-0123456789abcdef"$http2}
models:
  bench-model:
    routes:
      - {backend: mock, model: gpt-4o-mini, priority: 1}
fallback: {when_all_cooling: try_soonest}
logging: {level: info, access_log: "$access_log", error_log: "$tmp/proxy-error.log"}
EOF
[ -n "$extra" ] && cat "$extra" >>"$tmp/proxy.yaml"

# client N: N sequential requests on one keep-alive connection; every one must be a 200
# with a complete body.
client() {
    python3 - "$1" "$2" "$mode" "${LP_BENCH_CLIENT_KEY:-$key}" <<'PY'
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

# profile NAME REQUESTS: one whole proxy life under callgrind (start, 100 warm-up requests,
# REQUESTS more, SIGTERM, clean exit). Whole lives, not zero/dump mid-run: a mid-run dump
# charges the frames still on the stack (event loop, worker thread) with their callees' cost.
profile() {
    local name=$1 reqs=$2 port
    taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$tmp/$name.cg" \
        "$bin" -config "$tmp/proxy.yaml" >"$tmp/$name.stderr" 2>&1 &
    local vg=$!
    pids=("$vg" "${pids[@]}") # stop the proxy before the mock
    port=$(wait_port "$tmp/$name.stderr" 'listening on [^ ]*:([0-9]+) with' 60)
    client "$port" 100 || { echo "$name: warm-up failed" >&2; exit 1; }
    if [ "$reqs" -gt 0 ]; then
        client "$port" "$reqs" || { echo "$name: some of the $reqs requests failed" >&2; exit 1; }
    fi
    kill -TERM "$vg"
    wait "$vg" || { echo "$name: llm-proxy exited with $?" >&2; tail "$tmp/$name.stderr" >&2; exit 1; }
    pids=("${pids[@]:1}")
}

t0=$(date +%s)
profile base 0
profile run "$n"
t1=$(date +%s)

# Per-function Ir of run minus base = the cost of the N requests alone.
python3 - "$tmp/run.cg" "$tmp/base.cg" "$n" "$top" "$bin" "$mode" "$((t1 - t0))" <<'PY'
import re, subprocess, sys
run, base, n, top, binpath, mode, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7]

def costs(path, inclusive):
    out = subprocess.run(["callgrind_annotate", "--inclusive=" + inclusive, "--threshold=100", path],
                         capture_output=True, text=True, check=True).stdout
    total, fns = 0, {}
    for line in out.splitlines():
        m = re.match(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(.*)$", line)
        if not m:
            continue
        ir, what = int(m.group(1).replace(",", "")), m.group(2).strip()
        if what == "PROGRAM TOTALS":
            total = ir
        elif what and not what.startswith("*"):
            # "file:function [object]" -> "function [object basename]"
            m2 = re.match(r"^(?:.*?:)?([^:\[]+?)\s*(\[(.*)\])?$", what)
            fn = m2.group(1) if m2 else what
            obj = m2.group(3).rsplit("/", 1)[-1] if m2 and m2.group(3) else ""
            key = f"{fn} ({obj})" if obj else fn
            fns[key] = fns.get(key, 0) + ir
    return total, fns

t_run, self_run = costs(run, "no")
t_base, self_base = costs(base, "no")
_, inc_run = costs(run, "yes")
_, inc_base = costs(base, "yes")
per_req = (t_run - t_base) / n
print(f"llm-proxy under callgrind: {binpath}")
print(f"mode {mode}: {n} requests at c=1 on one keep-alive connection, after 100 warm-up requests "
      f"({secs} s for both runs under valgrind)")
print(f"Ir with {n} requests: {t_run:,}; without (start + warm-up + exit): {t_base:,}")
print(f"=> {per_req:,.0f} instructions per request (all threads)\n")

def show(title, a, b, skip_frames=False):
    diff = {k: a.get(k, 0) - b.get(k, 0) for k in set(a) | set(b)}
    if skip_frames:  # thread start and event loop frames hold ~100%: they say nothing
        diff = {k: v for k, v in diff.items() if v < 0.99 * (t_run - t_base)}
    print(title)
    print(f"{'Ir/request':>12} {'share':>6}  function (object)")
    for k, v in sorted(diff.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{v / n:12,.0f} {100 * v / (t_run - t_base):5.1f}%  {k}")
    print()

show(f"top {top} functions by self cost:", self_run, self_base)
show(f"top {top} functions by inclusive cost (frames >= 99% omitted):", inc_run, inc_base, True)
PY
