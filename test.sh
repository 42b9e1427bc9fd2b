#!/usr/bin/env bash
# Runs every test: unit tests, doc tests and the network-namespace integration tests.
# The namespace tests need root and the tools ip, nft and curl. Extra arguments go to
# `cargo test`, e.g. `./test.sh --test netns harness` runs only the harness self-test.
set -euo pipefail
cd "$(dirname "$0")"

if [[ $EUID -ne 0 ]]; then
    echo "test.sh: the network-namespace tests need root; run: sudo ./test.sh" >&2
    exit 1
fi
missing=()
for tool in ip nft curl kill; do
    type -P "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
    echo "test.sh: missing tools: ${missing[*]}" >&2
    echo "test.sh: on Debian: apt-get install -y iproute2 nftables curl procps" >&2
    exit 1
fi

exec cargo test "$@" -- --test-threads=2
