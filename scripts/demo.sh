#!/usr/bin/env bash
# Quick start, step 1: install what is missing, build, and run llm-proxy on examples/demo.yaml
# in front of two bundled mock backends (no network, no API key). Ctrl-C stops everything.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh" "$root/build" -DLP_SANITIZE=OFF
bin=$root/build
rundir=$root/.demo
mkdir -p "$rundir"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM
"$bin/llm-mock" --listen 127.0.0.1:9101 --name mock-openai --chunks 12 --chunk-interval-ms 60 >"$rundir/mock-openai.log" 2>&1 &
pids+=($!)
"$bin/llm-mock" --listen 127.0.0.1:9102 --name mock-anthropic --chunks 12 --chunk-interval-ms 60 >"$rundir/mock-anthropic.log" 2>&1 &
pids+=($!)
"$bin/llm-proxy" -config "$root/examples/demo.yaml" >"$rundir/proxy.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do
    curl -fsS http://127.0.0.1:8765/health >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fsS http://127.0.0.1:8765/health >/dev/null || { echo "llm-proxy did not start; see $rundir/proxy.log"; tail -20 "$rundir/proxy.log"; exit 1; }
cat <<MSG

llm-proxy is running on http://127.0.0.1:8765 with two mock backends (logs in .demo/).
Try a streamed answer:

  curl -N http://127.0.0.1:8765/v1/chat/completions -H 'Authorization: Bearer sk-demo-proxy-key-0123456789' -H 'Content-Type: application/json' -d '{"model":"gpt-demo","stream":true,"messages":[{"role":"user","content":"Hello"}]}'

The same through the Anthropic protocol, translated to the OpenAI-protocol backend:

  curl -N 'http://127.0.0.1:8765/v1/messages?beta=true' -H 'x-api-key: sk-demo-proxy-key-0123456789' -H 'anthropic-version: 2023-06-01' -d '{"model":"gpt-demo","max_tokens":256,"stream":true,"messages":[{"role":"user","content":"Hello"}]}'

Backend state: curl -s http://127.0.0.1:8765/admin/backends -H 'Authorization: Bearer sk-demo-proxy-key-0123456789'
Metrics:       curl -s http://127.0.0.1:8765/metrics
Press Ctrl-C to stop.
MSG
wait -n "${pids[@]}" || true
