#!/bin/sh
# fuzz/run.sh SECONDS [target...] - run each fuzz target (default: all) for SECONDS, one after
# the other, and print a Markdown table: target, seconds, executions, execs/s, coverage, corpus
# size and findings (crash-/leak-/timeout-/oom- artifacts). Exit status 1 if anything was found.
#
# Environment: FUZZ_BUILD (default build-fuzz, configured with -DLP_FUZZ=ON, see fuzz/README.md),
# FUZZ_WORK (default /tmp/lp-fuzz: the growing corpus per target and the artifacts; the committed
# corpus is read as seeds only), FUZZ_NICE (default 19: the machine is shared), FUZZ_RUNS (stop
# a target after this many executions even if SECONDS are not over, e.g. 10000000), FUZZ_ARGS
# (extra libFuzzer flags). -max_len and the dictionary per target come from the table below and in
# fuzz/README.md. A finding ends that target's run; the table says after how many seconds.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
[ $# -ge 1 ] || { echo "usage: fuzz/run.sh SECONDS [target...]" >&2; exit 2; }
secs=$1; shift
build=${FUZZ_BUILD:-$root/build-fuzz}
work=${FUZZ_WORK:-/tmp/lp-fuzz}
nicelvl=${FUZZ_NICE:-19}
if [ $# -eq 0 ]; then
    set -- $(cd "$here" && ls fuzz_*.c | sed 's/\.c$//')
fi

# max_len and dictionary of a target (keep in step with the table in fuzz/README.md).
params() {
    case $1 in
        fuzz_jscan)          echo "4096 json.dict" ;;
        fuzz_xlat_request)   echo "4096 json.dict" ;;
        fuzz_xlat_response)  echo "4096 json.dict" ;;
        fuzz_xlat_google)    echo "4096 json.dict" ;;
        fuzz_classify)       echo "2048 json.dict" ;;
        fuzz_config)         echo "4096 yaml.dict" ;;
        fuzz_sse)            echo "4096 sse.dict" ;;
        fuzz_stream_*)       echo "4096 sse.dict" ;;
        fuzz_edge_parse)     echo "4096 http.dict" ;;
        fuzz_upstream_parse) echo "4096 http.dict" ;;
        fuzz_mask)           echo "2048 -" ;;
        fuzz_urljoin)        echo "1024 http.dict" ;;
        *)                   echo "4096 -" ;;
    esac
}

mkdir -p "$work"
printf '| target | seconds | execs | execs/s | cov | work corpus | findings |\n'
printf '|---|---:|---:|---:|---:|---:|---:|\n'
found=0
for t in "$@"; do
    t=${t%.c}
    bin=$build/fuzz/$t
    if [ ! -x "$bin" ]; then
        printf '| %s | - | - | - | - | - | not built (%s) |\n' "$t" "$bin"
        found=1
        continue
    fi
    set -- $(params "$t")
    maxlen=$1 dict=$2
    dictarg=
    [ "$dict" = - ] || dictarg="-dict=$here/dict/$dict"
    mkdir -p "$work/$t/corpus" "$work/$t/art"
    log=$work/$t/run.log
    start=$(date +%s)
    touch "$work/$t/started"
    # shellcheck disable=SC2086 # FUZZ_ARGS and dictarg are word lists on purpose
    nice -n "$nicelvl" "$bin" -max_total_time="$secs" -max_len="$maxlen" -timeout=5 \
        -rss_limit_mb=1024 -print_final_stats=1 -runs="${FUZZ_RUNS:--1}" $dictarg ${FUZZ_ARGS:-} \
        -artifact_prefix="$work/$t/art/" "$work/$t/corpus" "$here/corpus/$t" >"$log" 2>&1 || true
    took=$(( $(date +%s) - start ))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    corpus=$(ls "$work/$t/corpus" | wc -l)
    arts=$(find "$work/$t/art" -type f -newer "$work/$t/started" \
        \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
    [ "$arts" -eq 0 ] || found=1
    findings=$arts
    [ "$arts" -eq 0 ] || findings="$arts (see $work/$t/art, $log)"
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$t" "$took" "${execs:-?}" "${rate:-?}" \
        "${cov:-?}" "$corpus" "$findings"
done
exit $found
