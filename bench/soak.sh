#!/bin/sh
# bench/soak.sh DURATION [soak.py options...]
# A fixed-rate soak of llm-proxy with a flapping backend; see bench/soak.py for what it runs and
# checks. DURATION: seconds, or with a unit: 90s, 2m, 1h. Needs a Release build in build-bench/
# (bench/README.md). Runs under nice so a shared machine keeps its other work.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: bench/soak.sh DURATION [--rate N] [--out FILE.md] ..." >&2; exit 2; }
d=$1; shift
case $d in
  *h) secs=$(( ${d%h} * 3600 )) ;;
  *m) secs=$(( ${d%m} * 60 )) ;;
  *s) secs=${d%s} ;;
  *) secs=$d ;;
esac
exec nice -n "${SOAK_NICE:-10}" python3 "$here/soak.py" --duration "$secs" "$@"
