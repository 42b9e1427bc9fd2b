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
for tool in ip nft curl kill ping python3 ethtool bird; do
    type -P "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})) && type -P apt-get >/dev/null; then
    echo "test.sh: installing the tools the tests use (missing: ${missing[*]})" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q && apt-get install -y -q --no-install-recommends iproute2 nftables curl procps iputils-ping python3 ethtool bird2
    missing=()
    for tool in ip nft curl kill ping python3 ethtool bird; do
        type -P "$tool" >/dev/null || missing+=("$tool")
    done
fi
if ((${#missing[@]})); then
    echo "test.sh: missing tools: ${missing[*]}" >&2
    echo "test.sh: on Debian: apt-get install -y iproute2 nftables curl procps iputils-ping python3 ethtool bird2" >&2
    exit 1
fi
if ! type -P cargo >/dev/null; then
    echo "test.sh: cargo not found: install Rust (https://rustup.rs) and run again" >&2
    exit 1
fi

cargo test "$@" -- --test-threads=2
# The unit tests that need root (TUN devices and raw sockets in a private namespace) are
# #[ignore]d so a plain `cargo test` as a user skips them visibly; as root, run them too.
if (($# == 0)); then
    cargo test --lib -- --ignored root_tests --test-threads=1
fi
