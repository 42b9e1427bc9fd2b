#!/usr/bin/env bash
# tunlb quick start: a TUN-mode load balancer in network namespaces, on this one machine.
#
#   client 10.1.0.2 -- 10.1.0.1 router 10.2.0.1 -- 10.2.0.2 director (tunlb director)
#                               10.3.0.1 (LAN 10.3.0.0/24)
#                      rs1 10.3.0.12          rs2 10.3.0.13     (tunlb realserver + tunlb httpd)
#
# The router sends the VIP 10.100.0.100 to the director, which wraps each request in a tunnel
# (ENCAP=ipip|gre|gue, default ipip) to a real server; the real server answers the client
# directly from the VIP. Everything is removed on exit, also on Ctrl-C or an error.
# Needs root, iproute2 and curl, and Rust (cargo); TUNLB=/path/to/tunlb skips the build.
# Will become `tunlb lab demo`.
set -euo pipefail
cd "$(dirname "$0")/.."

ENCAP=${ENCAP:-ipip}
VIP=10.100.0.100
RIPS=(10.3.0.12 10.3.0.13)

if [[ $EUID -ne 0 ]]; then
    echo "quickstart: run me as root (I create network namespaces)" >&2
    exit 1
fi
if ! type -P ip >/dev/null || ! type -P curl >/dev/null; then
    if type -P apt-get >/dev/null; then
        echo "quickstart: installing iproute2 and curl"
        DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends iproute2 curl >/dev/null
    fi
fi
tools=(ip curl)
[[ -n ${TUNLB:-} ]] || tools+=(cargo)
for tool in "${tools[@]}"; do
    if ! type -P "$tool" >/dev/null; then
        echo "quickstart: $tool is missing (Debian: apt-get install -y iproute2 curl;" \
            "Rust: https://rustup.rs)" >&2
        exit 1
    fi
done
case $ENCAP in ipip | gre | gue) ;; *)
    echo "quickstart: ENCAP must be ipip, gre or gue" >&2
    exit 1
    ;;
esac

if [[ -z ${TUNLB:-} ]]; then
    echo "== building tunlb"
    cargo build --quiet
    TUNLB=$PWD/target/debug/tunlb
fi

# Unique names, so two runs (or the tests) never collide.
P=tlb-qs-$$
CLIENT=$P-client ROUTER=$P-router DIRECTOR=$P-director RS1=$P-rs1 RS2=$P-rs2
NAMESPACES=("$CLIENT" "$ROUTER" "$DIRECTOR" "$RS1" "$RS2")
PIDS=()

cleanup() {
    # Finish even if stdout is gone (`quickstart.sh | head`): no errexit, writes just fail.
    set +e
    trap - EXIT INT TERM HUP
    trap '' PIPE
    echo "== cleaning up" 2>/dev/null
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$LOGS"
}
LOGS=$(mktemp -d /tmp/tlb-qs-logs.XXXXXX)
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'exit 129' HUP
trap 'exit 141' PIPE

in_ns() { ip netns exec "$@"; }
sysctl_ns() { in_ns "$1" sh -c "echo $3 > /proc/sys/${2//.//}"; }

# Starts a background process in a namespace; its output goes to $LOGS/NAME.log.
bg() {
    local ns=$1 name=$2
    shift 2
    # `ip netns exec` execs the program, so $! is the program itself.
    ip netns exec "$ns" "$@" >"$LOGS/$name.log" 2>&1 &
    PIDS+=($!)
}

# wait_for WHAT COMMAND...: retries COMMAND for 15 s, as long as every background process lives.
wait_for() {
    local what=$1 pid
    shift
    for _ in $(seq 150); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        for pid in "${PIDS[@]}"; do
            kill -0 "$pid" 2>/dev/null || fail "a background process died while waiting for $what"
        done
        sleep 0.1
    done
    fail "timed out waiting for $what"
}

fail() {
    echo "quickstart: $1; logs:" >&2
    tail -n 20 "$LOGS"/*.log >&2 || true
    exit 1
}

# link NS_A IF_A ADDR_A NS_B IF_B [ADDR_B]: a veth pair made inside the namespaces.
link() {
    ip -n "$1" link add name "$2" mtu 1500 type veth peer name "$5" mtu 1500 netns "$4"
    ip -n "$1" addr add "$3" dev "$2"
    ip -n "$1" link set dev "$2" up
    if [[ -n ${6:-} ]]; then ip -n "$4" addr add "$6" dev "$5"; fi
    ip -n "$4" link set dev "$5" up
}

echo "== creating namespaces ${NAMESPACES[*]}"
for ns in "${NAMESPACES[@]}"; do
    ip netns add "$ns"
    ip -n "$ns" link set dev lo up
    for conf in all default; do sysctl_ns "$ns" "net.ipv4.conf.$conf.rp_filter" 0; done
done
link "$CLIENT" eth0 10.1.0.2/24 "$ROUTER" to-client 10.1.0.1/24
link "$DIRECTOR" eth0 10.2.0.2/24 "$ROUTER" to-dir 10.2.0.1/24
ip -n "$ROUTER" link add name rs-lan mtu 1500 type bridge
ip -n "$ROUTER" addr add 10.3.0.1/24 dev rs-lan
ip -n "$ROUTER" link set dev rs-lan up
link "$RS1" eth0 10.3.0.12/24 "$ROUTER" to-rs1
link "$RS2" eth0 10.3.0.13/24 "$ROUTER" to-rs2
ip -n "$ROUTER" link set dev to-rs1 master rs-lan
ip -n "$ROUTER" link set dev to-rs2 master rs-lan
ip -n "$ROUTER" route add "$VIP/32" via 10.2.0.2
ip -n "$CLIENT" route add default via 10.1.0.1
ip -n "$DIRECTOR" route add default via 10.2.0.1
for ns in "$RS1" "$RS2"; do ip -n "$ns" route add default via 10.3.0.1; done
for ns in "$ROUTER" "$DIRECTOR"; do sysctl_ns "$ns" net.ipv4.ip_forward 1; done

echo "== starting the director in $DIRECTOR"
bg "$DIRECTOR" director "$TUNLB" director --local-address 10.2.0.2
wait_for "the director" in_ns "$DIRECTOR" "$TUNLB" adm -L -n

RS_NAMESPACES=("$RS1" "$RS2")
for i in 0 1; do
    ns=${RS_NAMESPACES[$i]} rip=${RIPS[$i]}
    echo "== real server $rip: tunlb realserver --vip $VIP --encap $ENCAP --allow 10.2.0.2/32"
    bg "$ns" "agent-$rip" "$TUNLB" realserver --vip "$VIP" --encap "$ENCAP" --allow 10.2.0.2/32
    wait_for "the agent to put $VIP on lo" sh -c "ip -n $ns -o addr show dev lo | grep -q $VIP/32"
    echo "== real server $rip: tunlb httpd --listen $VIP:80 --banner 'from $rip'"
    bg "$ns" "httpd-$rip" "$TUNLB" httpd --listen "$VIP:80" --banner "from $rip"
    wait_for "httpd on $rip" in_ns "$ns" curl -s --max-time 1 "http://$VIP/"
done

adm() {
    echo "\$ tunlb adm $*"
    in_ns "$DIRECTOR" "$TUNLB" adm "$@"
}
echo "== configuring the director (ipvsadm syntax)"
adm -A -t "$VIP:80" -s rr
for rip in "${RIPS[@]}"; do
    adm -a -t "$VIP:80" -r "$rip" -i -w 1 --tun-type "$ENCAP"
done

echo "== 12 requests from the client to http://$VIP/"
for i in $(seq 12); do
    printf '%2d: ' "$i"
    in_ns "$CLIENT" curl -s --max-time 5 "http://$VIP/" || echo "(no answer)"
done

echo "== the service table"
adm -L -n
echo "== the connection table"
adm -L -n -c
