#!/usr/bin/env bash
# Quick start, step 2: the whole test suite (unit, fuzz-corpus replay, integration with the real
# binaries, official SDK clients), built with AddressSanitizer and UndefinedBehaviorSanitizer.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
dir=${LP_TEST_BUILD_DIR:-$root/build-asan}
"$root/scripts/build.sh" "$dir" -DLP_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
# Official SDK clients used by the integration tests (npm registry; cached in tests/sdk).
if [ -f "$root/tests/sdk/package.json" ]; then
    (cd "$root/tests/sdk" && { [ -d node_modules ] && npm ls --silent >/dev/null 2>&1 || npm install --no-audit --no-fund --loglevel=error; })
fi
# Every prerequisite was installed above: a test that finds one missing fails instead of skipping.
export LP_REQUIRE_ALL=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
rm -rf "$dir/integration-logs"
ctest --test-dir "$dir" --output-on-failure -j2 "$@"
