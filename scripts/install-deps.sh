#!/usr/bin/env bash
# Install the Debian 12 packages llm-proxy needs to build, test, demo and benchmark.
# Idempotent: installs only what is missing, and runs apt-get update only when it must.
set -euo pipefail

PKGS=(build-essential cmake pkg-config clang clang-format libclang-rt-14-dev
      libevent-dev libcurl4-openssl-dev libssl-dev libc-ares-dev libjson-c-dev libyaml-dev libcmocka-dev
      zlib1g-dev
      libhiredis-dev redis-server
      python3 nodejs npm curl ca-certificates openssl nginx-light wrk prometheus systemd logrotate
      chromium fonts-dejavu-core)

missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
# node/npm may come from elsewhere than Debian's packages (e.g. NodeSource); accept any working one.
if command -v node >/dev/null && command -v npm >/dev/null; then
    tmp=()
    for p in "${missing[@]}"; do [[ $p == nodejs || $p == npm ]] || tmp+=("$p"); done
    missing=("${tmp[@]}")
fi
if ((${#missing[@]})); then
    SUDO=""
    [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    echo "install-deps: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    echo "install-deps: all packages present"
fi
