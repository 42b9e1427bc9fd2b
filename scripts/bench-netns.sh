#!/usr/bin/env bash
# The namespace benchmark: tunlb against kernel nftables DNAT, HAProxy and nginx, in one topology.
#
#   sudo scripts/bench-netns.sh                 # 3 runs of 5 s per load (about 11 minutes)
#   sudo RUNS=1 DURATION=2 scripts/bench-netns.sh   # quick check
#
# Environment: RUNS (3), DURATION (seconds per load, 5), CONNS (wrk connections, 50),
# CANDIDATES (space-separated subset of: direct nft haproxy nginx tun-ipip tun-gue dr nat; a tunlb
# candidate with the suffix -nooffload runs the director (and TUN-mode agents) with --no-offload,
# e.g. tun-ipip-nooffload), UDP (1: run the 64-byte UDP packet-rate load, 0: skip), UDP_FLOWS
# (source ports of the UDP load, 8), UDP_GRO_FWD (1: with WIRE=napi, the director's NIC also
# gets rx-udp-gro-forwarding, so it merges forwarded UDP flows into trains, for every candidate
# alike; not the router's: over veth a router would hand those trains on whole, and an IPIP/GRE
# real server's raw socket cannot split merged datagrams back; 0, the default: off),
# WIRE (napi, inline, or both: "inline napi"; see below),
# CLIENT_CPU (0), BALANCER_CPU (1), SERVER_CPU (2 with 3 or more CPUs, else 1: with 2 CPUs the
# balancer shares the servers' CPU), NAPI_CLIENT_CPU, NAPI_ROUTER_CPU, NAPI_DIRECTOR_CPU,
# NAPI_SERVER_CPU (where the receive threads run, see below), DIRECTOR_ARGS (extra arguments
# appended to every `tunlb director` command line, e.g. "--batch 32"), AGENT_ARGS (the same for
# `tunlb realserver`), PROFILE (a candidate, e.g. tun-ipip: after its measured runs, one more
# keep-alive run under `perf record -e cpu-clock -g` of the balancer process; the report is kept
# in the work directory, whose path is printed), PROFILE_LOAD (what that extra run is: ka, the
# default, or upload: an iperf3 upload), PROFILE_SCOPE (balancer, the default, or machine: every
# CPU, the report sorted by thread too, for loads whose cost is spread over the receive paths of
# several hosts), TUNLB (path of the tunlb binary; default:
# target/release/tunlb, built first).
#
# Topology (built afresh for every candidate, the same each time; nothing leaves these
# namespaces):
#
#   client 10.1.0.2 ── 10.1.0.1 router ── bridge lan 10.3.0.1/24 (MTU 1600)
#                                            ├── director 10.3.0.11   (VIP 10.100.0.100 routed here)
#                                            ├── rs1 10.3.0.12        (nginx, iperf3 -s)
#                                            └── rs2 10.3.0.13        (nginx)
#
# The router sends the VIP to the director. The real servers' default route is the router
# (replies go straight to the client: direct, proxies, TUN, DR) or the director (kernel DNAT and
# tunlb NAT, whose replies must be translated back). The real-server LAN has MTU 1600 (a jumbo
# underlay) so a 1500-byte client packet still fits once encapsulated in TUN mode; the client's
# link is 1500, so every candidate sees the same MSS. The load generator runs on CLIENT_CPU, the
# balancer on BALANCER_CPU and the real servers on SERVER_CPU (all printed at the start).
#
# The wire. veth delivers a packet synchronously: without NAPI, the whole receive path of the
# next hop (the router's bridge and forwarding, the real server's IP receive and socket
# delivery, up to waking the server) runs in the softirq of the sender's syscall and is charged
# to the sender: 32-39% of the tunlb director's samples were such receive work of other hosts,
# and the same inflates HAProxy's and nginx's figures. WIRE=napi (the default) turns on GRO
# (which gives a veth end a NAPI instance and a receive ring) and threaded NAPI on every veth
# end, so each end's receive work runs in its own napi/DEV-N kernel thread, as a NIC's softirq
# runs on the receiving host: the sender pays up to putting the packet on the peer's ring.
# WIRE=inline is the old behaviour; WIRE="inline napi" runs every candidate both ways
# (interleaved; labels then carry [inline] / [napi]). The receive threads are pinned to the CPU
# of the host that owns the receiving end: the director's NIC to NAPI_DIRECTOR_CPU (default
# BALANCER_CPU), the real servers' to NAPI_SERVER_CPU (default SERVER_CPU). The router is the
# network and has no CPU of its own: its four ends (from the client, the director and each real
# server) run on NAPI_ROUTER_CPU, default SERVER_CPU, so the client's CPU only generates load.
# The client's NIC runs on NAPI_CLIENT_CPU: CLIENT_CPU with 3 or more CPUs; with 2, SERVER_CPU,
# where WIRE=inline ran it too (inline in the real server's reply), so that wrk alone on its CPU
# stays the same load generator in both modes. Waking a receive thread on another CPU is charged
# to the sender (per wake-up): with the router's threads on the client's CPU the director's CPU
# per keep-alive request was 5.0-5.3 us instead of 3.0-3.1 us (quick runs, 2 CPUs).
#
# The balancer's CPU per request is the balancer process's utime+stime (all its threads, and
# nginx's workers) over the wrk run divided by the requests (for the UDP load: by the packets
# the sink received); for kernel DNAT, which has no process, it is the whole machine's busy CPU
# per request minus the direct path's (so it also contains the extra softirq work of the hop
# through the director). With WIRE=napi the receive threads' CPU (utime+stime of the kthreads)
# is reported as well, per receiving host: the director's NIC (the director host's receive
# work: IP receive and forwarding into the TUN, the proxies' TCP receive, all of kernel DNAT),
# the router, the real servers' NICs and the client's NIC; the balancer's own cost and the
# wire's are both visible and nothing is left out.
set -euo pipefail

RUNS=${RUNS:-3}
UDP_GRO_FWD=${UDP_GRO_FWD:-0}
DURATION=${DURATION:-5}
CONNS=${CONNS:-50}
UDP=${UDP:-1}
UDP_FLOWS=${UDP_FLOWS:-8}
WIRE=${WIRE:-napi}
read -r -a WIRES <<<"$WIRE"
PROFILE=${PROFILE:-}
PROFILE_LOAD=${PROFILE_LOAD:-ka}
PROFILE_SCOPE=${PROFILE_SCOPE:-balancer}
case $PROFILE_LOAD in ka | upload) ;; *) echo "PROFILE_LOAD must be ka or upload" >&2; exit 2 ;; esac
case $PROFILE_SCOPE in balancer | machine) ;; *) echo "PROFILE_SCOPE must be balancer or machine" >&2; exit 2 ;; esac
read -r -a DIRECTOR_EXTRA <<<"${DIRECTOR_ARGS:-}"
read -r -a AGENT_EXTRA <<<"${AGENT_ARGS:-}"
NCPU=$(nproc)
CLIENT_CPU=${CLIENT_CPU:-0}
if ((NCPU >= 3)); then
    BALANCER_CPU=${BALANCER_CPU:-1}
    SERVER_CPU=${SERVER_CPU:-2}
    NAPI_CLIENT_CPU=${NAPI_CLIENT_CPU:-$CLIENT_CPU}
else
    SERVER_CPU=${SERVER_CPU:-1}
    BALANCER_CPU=${BALANCER_CPU:-$SERVER_CPU}
    NAPI_CLIENT_CPU=${NAPI_CLIENT_CPU:-$SERVER_CPU}
fi
NAPI_ROUTER_CPU=${NAPI_ROUTER_CPU:-$SERVER_CPU}
NAPI_DIRECTOR_CPU=${NAPI_DIRECTOR_CPU:-$BALANCER_CPU}
NAPI_SERVER_CPU=${NAPI_SERVER_CPU:-$SERVER_CPU}
CANDIDATES=${CANDIDATES:-"direct nft haproxy nginx tun-ipip tun-gue dr nat"}

VIP=10.100.0.100
CLIENT=10.1.0.2
DIRECTOR=10.3.0.11
RS1=10.3.0.12
RS2=10.3.0.13
ROUTER_LAN=10.3.0.1

PREFIX="tlbbench$$"
CREATED_NS=()
STARTED_PIDS=()
WORK=""

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

cleanup() {
    local status=$?
    set +e
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    sleep 0.3
    for pid in "${STARTED_PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null
    done
    local ns
    for ns in "${CREATED_NS[@]}"; do
        # Anything still running inside a namespace this script made was started by it.
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill -KILL "$pid" 2>/dev/null
        done
        ip netns del "$ns" 2>/dev/null
    done
    if ((status != 0)); then
        log "exited with status $status (namespaces removed; logs kept in $WORK)"
    elif [[ -n "$PROFILE" ]]; then
        log "work directory with the profiles kept: $WORK"
    elif [[ -n "$WORK" && -d "$WORK" ]]; then
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

((EUID == 0)) || die "run as root (namespaces, nftables, apt-get)"
cd "$(dirname "$0")/.."
WORK=$(mktemp -d "/tmp/$PREFIX.XXXXXX")
chmod 755 "$WORK"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" # HAProxy and nginx want fds per connection

# ---------------------------------------------------------------------------------------------
# Tools.
need_pkgs=()
command -v wrk >/dev/null || need_pkgs+=(wrk)
command -v iperf3 >/dev/null || need_pkgs+=(iperf3)
command -v haproxy >/dev/null || need_pkgs+=(haproxy)
command -v nginx >/dev/null || need_pkgs+=(nginx)
command -v nft >/dev/null || need_pkgs+=(nftables)
command -v jq >/dev/null || need_pkgs+=(jq)
[[ " ${WIRES[*]} " == *" napi "* ]] && ! command -v ethtool >/dev/null && need_pkgs+=(ethtool)
[[ -n "$PROFILE" ]] && ! command -v perf >/dev/null && need_pkgs+=(linux-perf)
[[ -e /usr/lib/nginx/modules/ngx_stream_module.so ]] || need_pkgs+=(libnginx-mod-stream)
if ((${#need_pkgs[@]})); then
    log "installing ${need_pkgs[*]} with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${need_pkgs[@]}" >"$WORK/apt.log" 2>&1 ||
        { DEBIAN_FRONTEND=noninteractive apt-get update >>"$WORK/apt.log" 2>&1 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y "${need_pkgs[@]}" >>"$WORK/apt.log" 2>&1; } ||
        die "apt-get install ${need_pkgs[*]} failed: $(tail -3 "$WORK/apt.log")"
fi
# A package's postinst may start a system-wide daemon; this script uses its own instances only.

if [[ -z "${TUNLB:-}" ]]; then
    log "cargo build --release"
    cargo build --release --quiet
    TUNLB=$PWD/target/release/tunlb
fi
[[ -x "$TUNLB" ]] || die "no tunlb binary at $TUNLB"

PIN_CLIENT=()
PIN_BALANCER=()
PIN_SERVER=()
PINNED=0
if ((NCPU > SERVER_CPU && NCPU > CLIENT_CPU && NCPU > BALANCER_CPU)) && command -v taskset >/dev/null; then
    PIN_CLIENT=(taskset -c "$CLIENT_CPU")
    PIN_BALANCER=(taskset -c "$BALANCER_CPU")
    PIN_SERVER=(taskset -c "$SERVER_CPU")
    PINNED=1
fi
((${#WIRES[@]})) || die "WIRE is empty (napi, inline or both)"
for w in "${WIRES[@]}"; do
    [[ $w == napi || $w == inline ]] || die "WIRE must be napi, inline or both, not $w"
done

# ---------------------------------------------------------------------------------------------
# Topology.
inns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
mkns() {
    ip netns add "$1"
    CREATED_NS+=("$1")
    inns "$1" ip link set lo up
    inns "$1" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
}

mkdir -p "$WORK/www"
printf 'hello from a real server\n' >"$WORK/www/index.html"
chmod -R a+rX "$WORK/www"
wait_http() { # URL WHAT
    local i
    for i in $(seq 1 50); do
        inns "$NS_CLIENT" curl -s -o /dev/null --max-time 1 "$1" && return 0
        sleep 0.1
    done
    die "$2 does not answer $1"
}

# The receive threads of the current lab, by the host that owns the receiving veth end.
NAPI_GROUPS=(director router servers client)
declare -A NAPI_PIDS=()
declare -A NAPI_DESC=()
napi_threads() { ps -eo pid=,comm= | awk '$2 ~ /^napi\// {print $1, $2}'; }
# wire_napi NS DEV CPU GROUP: GRO (hence a NAPI instance and a receive ring) and threaded NAPI
# on the receiving veth end DEV, its kernel thread pinned to CPU and counted under GROUP. A veth
# end hands its peer's NAPI only what the peer could aggregate (veth_skb_is_eligible_for_gro):
# while the sending end has TSO on, TCP and forwarded packets still go inline, and so does a
# locally sent UDP/raw/packet-socket skb unless the receiver does UDP GRO forwarding. So every
# end also gets TSO off: a TCP sender segments its GSO super-packets in software (as over a NIC
# without TSO; the receiver's GRO merges them again), which costs bulk senders some CPU (the
# iperf3 figures) but not the request/response loads. And a queue: a veth end without a qdisc
# (noqueue) drops what does not fit its peer's 256-entry ring, in mid-path, after the hops
# before it did their work; with a qdisc (pfifo_fast, 1000 packets, like a NIC's) the full ring
# stops the queue and the sender waits or drops at its own door.
wire_napi() {
    local ns=$1 dev=$2 cpu=$3 group=$4
    local want="napi/$dev-"
    want=${want:0:15} # a kernel thread's comm is at most 15 characters
    local before new pid=""
    for _ in 1 2 3; do
        before=$(napi_threads)
        inns "$ns" ethtool -K "$dev" gro on tso off >/dev/null ||
            die "ethtool -K $dev gro on tso off failed in $ns; use WIRE=inline"
        if ((UDP_GRO_FWD)) && [[ $group == director ]]; then
            inns "$ns" ethtool -K "$dev" rx-udp-gro-forwarding on >/dev/null ||
                die "ethtool -K $dev rx-udp-gro-forwarding on failed in $ns; use UDP_GRO_FWD=0"
        fi
        inns "$ns" ip link set dev "$dev" txqueuelen 1000
        inns "$ns" tc qdisc replace dev "$dev" root pfifo_fast
        inns "$ns" sh -c "echo 1 >/sys/class/net/$dev/threaded" ||
            die "no threaded NAPI for $dev in $ns (/sys/class/net/$dev/threaded); use WIRE=inline"
        # The thread that appeared with this device's name (another job on the machine could
        # be making NAPI threads at the same moment: then try again).
        new=$(napi_threads | grep -vxF -f <(printf '%s\n' "$before") |
            awk -v w="$want" 'substr($2, 1, length(w)) == w {print $1}') || true
        if [[ -n "$new" && $(wc -l <<<"$new") -eq 1 ]]; then
            pid=$new
            break
        fi
        inns "$ns" sh -c "echo 0 >/sys/class/net/$dev/threaded"
    done
    [[ -n "$pid" ]] || die "no NAPI thread appeared for $dev in $ns (threaded veth NAPI does not work on this kernel?); use WIRE=inline"
    if ((PINNED)); then
        taskset -pc "$cpu" "$pid" >/dev/null || die "cannot pin NAPI thread $pid ($dev in $ns) to cpu $cpu"
    fi
    NAPI_PIDS[$group]+="$pid "
    NAPI_DESC[$group]+="$(ps -o comm= -p "$pid")@cpu$(taskset -pc "$pid" | sed 's/.*: //') "
}

# wire_setup: with LAB_WIRE=napi, a receive thread on every veth end of the lab.
wire_setup() {
    NAPI_PIDS=()
    NAPI_DESC=()
    [[ $LAB_WIRE == napi ]] || return 0
    wire_napi "$NS_CLIENT" eth0 "$NAPI_CLIENT_CPU" client
    local dev
    for dev in to-client to-dir to-rs1 to-rs2; do
        wire_napi "$NS_ROUTER" "$dev" "$NAPI_ROUTER_CPU" router
    done
    wire_napi "$NS_DIR" eth0 "$NAPI_DIRECTOR_CPU" director
    wire_napi "$NS_RS1" eth0 "$NAPI_SERVER_CPU" servers
    wire_napi "$NS_RS2" eth0 "$NAPI_SERVER_CPU" servers
    if ((LAB == 1)) || ((${#WIRES[@]} > 1)); then
        log "receive threads: director ${NAPI_DESC[director]% }; router ${NAPI_DESC[router]% }; servers ${NAPI_DESC[servers]% }; client ${NAPI_DESC[client]% }"
    fi
}

# wire_drops → "LINK QDISC": packets the lab's interfaces dropped (a veth end's ring or a TUN
# queue full, for one) and its qdiscs dropped (WIRE=napi: a full queue; the UDP generator
# overrunning the path shows here, at the client's door).
wire_drops() {
    local ns link=0 qdisc=0 n
    for ns in "${LAB_NS[@]}"; do
        n=$(ip -n "$ns" -s -j link show 2>/dev/null |
            jq '[.[] | (.stats64.rx.dropped // 0) + (.stats64.tx.dropped // 0)] | add // 0' 2>/dev/null) || n=0
        link=$((link + ${n:-0}))
        n=$(inns "$ns" tc -s -j qdisc show 2>/dev/null | jq '[.[] | .drops // 0] | add // 0' 2>/dev/null) || n=0
        qdisc=$((qdisc + ${n:-0}))
    done
    echo "$link $qdisc"
}

LAB=0
# build_lab WIRE: a fresh copy of the topology (and real servers) for the next candidate, so no
# state (conntrack entries, TIME_WAIT sockets, neighbour or path-MTU caches) leaks between
# candidates.
build_lab() {
    LAB=$((LAB + 1))
    LAB_WIRE=$1
    NS_CLIENT="$PREFIX-$LAB-client"
    NS_ROUTER="$PREFIX-$LAB-router"
    NS_DIR="$PREFIX-$LAB-director"
    NS_RS1="$PREFIX-$LAB-rs1"
    NS_RS2="$PREFIX-$LAB-rs2"
    LAB_NS=("$NS_CLIENT" "$NS_ROUTER" "$NS_DIR" "$NS_RS1" "$NS_RS2")
    LAB_PIDS=()
    UDP_PORT=5300
    log "building namespaces $PREFIX-$LAB-{client,router,director,rs1,rs2}"
    local ns i
    for ns in "${LAB_NS[@]}"; do mkns "$ns"; done

    # Veth pairs are made inside the namespaces: no interface ever appears in the root namespace.
    ip -n "$NS_CLIENT" link add eth0 type veth peer name to-client netns "$NS_ROUTER"
    inns "$NS_CLIENT" ip addr add "$CLIENT/24" dev eth0
    inns "$NS_CLIENT" ip link set eth0 up
    inns "$NS_CLIENT" ip route add default via 10.1.0.1
    inns "$NS_ROUTER" ip addr add 10.1.0.1/24 dev to-client
    inns "$NS_ROUTER" ip link set to-client up
    inns "$NS_ROUTER" ip link add lan mtu 1600 type bridge
    inns "$NS_ROUTER" ip addr add "$ROUTER_LAN/24" dev lan
    inns "$NS_ROUTER" ip link set lan up
    inns "$NS_ROUTER" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.send_redirects=0
    # A LAN switch, not a firewall: without this, br_netfilter runs the IP hooks on every
    # bridged frame, inside the softirq of whoever sent it (veth delivers synchronously), and
    # that was 17-25% of the director's measured CPU (perf, TUN ipip, keep-alive and UDP).
    inns "$NS_ROUTER" sysctl -qw net.bridge.bridge-nf-call-iptables=0 \
        net.bridge.bridge-nf-call-ip6tables=0 net.bridge.bridge-nf-call-arptables=0 2>/dev/null || true

    lan_port() { # NS NAME ADDR
        local ns=$1 name=$2 addr=$3
        ip -n "$ns" link add eth0 mtu 1600 type veth peer name "to-$name" mtu 1600 netns "$NS_ROUTER"
        inns "$NS_ROUTER" ip link set "to-$name" master lan up
        inns "$ns" ip addr add "$addr/24" dev eth0
        inns "$ns" ip link set eth0 up
        inns "$ns" ip route add default via "$ROUTER_LAN"
}
lan_port "$NS_DIR" dir "$DIRECTOR"
lan_port "$NS_RS1" rs1 "$RS1"
lan_port "$NS_RS2" rs2 "$RS2"
inns "$NS_ROUTER" ip route add "$VIP/32" via "$DIRECTOR"
inns "$NS_DIR" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.send_redirects=0 \
    net.ipv4.conf.eth0.send_redirects=0 net.ipv4.ip_local_port_range="1024 65535" \
    net.ipv4.tcp_tw_reuse=1
inns "$NS_CLIENT" sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1
for ns in "$NS_RS1" "$NS_RS2"; do
    inns "$ns" sysctl -qw net.core.somaxconn=4096 net.ipv4.tcp_max_syn_backlog=4096
done
wire_setup

# ---------------------------------------------------------------------------------------------
# Real servers: nginx, one worker each, a small static file; iperf3 -s on rs1.
for i in 1 2; do
    local ns_var="NS_RS$i"
    cat >"$WORK/rs$i.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/rs$i.pid;
error_log $WORK/rs$i.err warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    client_body_temp_path $WORK/rs$i-tmp;
    proxy_temp_path $WORK/rs$i-tmp;
    fastcgi_temp_path $WORK/rs$i-tmp;
    uwsgi_temp_path $WORK/rs$i-tmp;
    scgi_temp_path $WORK/rs$i-tmp;
    server { listen 80 backlog=4096; root $WORK/www; }
}
EOF
    ip netns exec "${!ns_var}" "${PIN_SERVER[@]}" nginx -c "$WORK/rs$i.conf" -e "$WORK/rs$i.err" \
        >>"$WORK/rs$i.log" 2>&1 &
    STARTED_PIDS+=($!)
    LAB_PIDS+=($!)
done
ip netns exec "$NS_RS1" "${PIN_SERVER[@]}" iperf3 -s -p 5201 >>"$WORK/iperf3-rs1.log" 2>&1 &
STARTED_PIDS+=($!)
LAB_PIDS+=($!)

wait_http "http://$RS1/" "real server 1"
wait_http "http://$RS2/" "real server 2"
}

destroy_lab() {
    local link qdisc
    read -r link qdisc <<<"$(wire_drops)"
    ((link + qdisc == 0)) ||
        log "$KEY: packets dropped in the lab: $link by interfaces (ip -s link), $qdisc by queues (tc -s qdisc; UDP generator overrun)"
    stop_pids "${LAB_PIDS[@]}"
    local ns pid
    for ns in "${LAB_NS[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null || true
    done
}

# ---------------------------------------------------------------------------------------------
# Measurement helpers.
proc_ticks() { # PID...: utime+stime of these processes and their direct children, in ticks
    local total=0 pid f
    for pid in "$@"; do
        for f in /proc/"$pid"/stat $(pgrep -P "$pid" | sed 's|.*|/proc/&/stat|'); do
            [[ -r "$f" ]] || continue
            # Fields after the ")" of comm: utime is the 12th, stime the 13th.
            total=$((total + $(sed 's/.*) //' "$f" | awk '{print $12 + $13}')))
        done
    done
    echo "$total"
}
machine_busy() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; } # user nice system irq softirq
HZ=$(getconf CLK_TCK)

# wrk TARGET_URL EXTRA... → prints "req_per_s p50_us p99_us requests"
run_wrk() {
    local url=$1; shift
    local out
    out=$(timeout $((DURATION + 15)) ip netns exec "$NS_CLIENT" "${PIN_CLIENT[@]}" \
        wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$@" "$url" 2>&1) || {
        log "wrk failed: $out"
        echo "0 0 0 0"
        return
    }
    echo "$out" >>"$WORK/wrk.log"
    local rps p50 p99 reqs
    rps=$(awk '/^Requests\/sec:/{print $2}' <<<"$out")
    reqs=$(awk '/requests in/{print $1}' <<<"$out")
    p50=$(awk '$1=="50%"{print $2}' <<<"$out")
    p99=$(awk '$1=="99%"{print $2}' <<<"$out")
    echo "${rps:-0} $(to_us "${p50:-0us}") $(to_us "${p99:-0us}") ${reqs:-0}"
}
to_us() { # wrk latency like 512.00us, 1.20ms, 2.00s → microseconds
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000;
        else if (v ~ /s$/) print n * 1000000; else print n }'
}

# iperf3 HOST EXTRA... → prints Gbit/s (receiver side)
run_iperf() {
    local host=$1; shift
    local out
    out=$(timeout $((DURATION + 15)) ip netns exec "$NS_CLIENT" "${PIN_CLIENT[@]}" \
        iperf3 -c "$host" -p 5201 -t "$DURATION" -J "$@" 2>&1) || {
        log "iperf3 $* failed: $(jq -r '.error // empty' <<<"$out" 2>/dev/null || echo "$out" | tail -2)"
        echo 0
        return
    }
    log "iperf3 $*: $(jq -r '"\(.end.sum_received.bits_per_second / 1e9 * 100 | round / 100) Gbit/s, \(.end.sum_sent.retransmits // "?") retransmitted segments"' <<<"$out" 2>/dev/null)"
    jq -r '.end.sum_received.bits_per_second / 1e9' <<<"$out" 2>/dev/null || {
        log "iperf3 $* gave no result: $(jq -r '.error // empty' <<<"$out" 2>/dev/null)"
        echo 0
    }
}

# 64-byte UDP packet rate with `tunlb udpblast`: a sink (recvmmsg) on rs1, bound to the
# wildcard so it also takes datagrams for the hidden VIP, and a generator (sendmmsg, UDP_FLOWS
# source ports) in the client, both bounded in time and count.
# run_udp HOST PIDS... → prints three lines: "received_pps sent_pps received_packets", and the
# snapshots (see snapshot) before and after the load.
run_udp() {
    local host=$1; shift
    local sink_log="$WORK/udp-sink.log" sink_out="$WORK/udp-sink.json"
    : >"$sink_log"
    ip netns exec "$NS_RS1" "${PIN_SERVER[@]}" "$TUNLB" udpblast sink --listen "0.0.0.0:$UDP_PORT" \
        --duration $((DURATION + 5)) --idle 1 >"$sink_out" 2>"$sink_log" &
    local sink=$!
    STARTED_PIDS+=("$sink")
    local i
    for i in $(seq 1 50); do
        grep -q listening "$sink_log" && break
        sleep 0.1
    done
    local s0 s1 sent
    s0=$(snapshot "$@")
    sent=$(timeout $((DURATION + 5)) ip netns exec "$NS_CLIENT" "${PIN_CLIENT[@]}" \
        "$TUNLB" udpblast send --to "$host:$UDP_PORT" --size 64 --duration "$DURATION" \
        --max-packets $((DURATION * 5000000)) --flows "$UDP_FLOWS" 2>>"$WORK/udp-send.log") ||
        log "udpblast send failed: $(tail -2 "$WORK/udp-send.log")"
    s1=$(snapshot "$@")
    wait "$sink" 2>/dev/null || log "udpblast sink failed: $(tail -2 "$sink_log")"
    echo "$sent" >>"$WORK/udp-send.json"
    local got spps packets rpps
    got=$(jq -r '"\(.packets) \(.pps)"' "$sink_out" 2>/dev/null || echo "0 0")
    spps=$(jq -r '.pps' <<<"$sent" 2>/dev/null || echo 0)
    read -r packets rpps <<<"$got"
    printf '%s %s %s\n%s\n%s\n' "${rpps:-0}" "${spps:-0}" "${packets:-0}" "$s0" "$s1"
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) print 0; else if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

declare -A R # R[candidate,metric] = median

# snapshot PIDS... → "process_ticks machine_ticks rx_ticks_per_NAPI_GROUP..." now.
snapshot() {
    local out g pids
    out="$(proc_ticks "$@") $(machine_busy)"
    for g in "${NAPI_GROUPS[@]}"; do
        read -r -a pids <<<"${NAPI_PIDS[$g]:-}"
        out+=" $(proc_ticks "${pids[@]}")"
    done
    echo "$out"
}

# record KIND SNAPSHOT_BEFORE SNAPSHOT_AFTER COUNT: appends the CPU per request (or packet) of
# this run to vals (measure's): KIND_cpu (balancer process), KIND_mcpu (machine), and with
# WIRE=napi KIND_rx_GROUP (each group of receive threads), in microseconds.
record() {
    local kind=$1 count=$4 i
    local -a a b keys=(cpu mcpu)
    read -r -a a <<<"$2"
    read -r -a b <<<"$3"
    [[ $LAB_WIRE == napi ]] && for i in "${NAPI_GROUPS[@]}"; do keys+=("rx_$i"); done
    for i in "${!keys[@]}"; do
        vals[${kind}_${keys[$i]}]+="$(awk -v d=$((b[i] - a[i])) -v n="$count" -v hz="$HZ" \
            'BEGIN { print (n > 0) ? d / hz / n * 1e6 : 0 }') "
    done
    # The router's threads forward every packet of every load: if they did nothing, the kernel
    # delivered inline after all (veth_skb_is_eligible_for_gro said no).
    if [[ $LAB_WIRE == napi ]] && ((count > 1000 && b[3] == a[3])); then
        log "warning: the router's receive threads used no CPU during $kind: is veth NAPI bypassed on this kernel?"
    fi
}

# profile NAME URL HOST PIDS...: one more PROFILE_LOAD run (not in the medians) under perf
# record of the balancer process and its children (of the balancer's CPU if it has no process;
# of every CPU with PROFILE_SCOPE=machine); the report goes to the work directory.
profile() {
    local name=$1 url=$2 host=$3; shift 3
    local targets=() p file="$WORK/profile-${KEY//[^A-Za-z0-9_-]/-}"
    for p in "$@"; do
        targets+=("$p")
        mapfile -t -O "${#targets[@]}" targets < <(pgrep -P "$p")
    done
    # Without a process (kernel DNAT, direct): the balancer's whole CPU, and its top entries by
    # thread (the NAPI threads, the servers), as its symbols are spread thin.
    local scope=(-a -C "$BALANCER_CPU") top=(--sort comm)
    ((${#targets[@]})) && scope=(-p "$(IFS=,; echo "${targets[*]}")") && top=()
    [[ $PROFILE_SCOPE == machine ]] && scope=(-a) && top=(--sort comm)
    log "$name: profiling one more $PROFILE_LOAD run (perf record -e cpu-clock -g ${scope[*]})"
    perf record -e cpu-clock -g -o "$file.data" "${scope[@]}" -- sleep "$DURATION" >"$file.log" 2>&1 &
    local perf_pid=$!
    STARTED_PIDS+=("$perf_pid")
    sleep 0.3
    case $PROFILE_LOAD in
    ka) run_wrk "$url" >/dev/null ;;
    upload) run_iperf "$host" >/dev/null ;;
    esac
    wait "$perf_pid" || log "perf record failed: $(tail -2 "$file.log")"
    perf report -i "$file.data" --no-children --percent-limit 2 --stdio >"$file.txt" 2>>"$file.log" ||
        log "perf report failed: $(tail -2 "$file.log")"
    perf report -i "$file.data" --no-children --percent-limit 2 --stdio -g none "${top[@]}" 2>>"$file.log" |
        grep -v '^#' | grep -v '^$' | sed -n 1,15p >"$file.top" || true
    log "$name: profile (with call graphs) in $file.txt; top entries:"
    sed 's/^/    /' "$file.top" >&2
    PROFILES+=("$KEY: $file.txt")
}
PROFILES=()

# measure NAME TARGET_HOST PIDS...: every load RUNS times, medians into R[KEY,metric].
measure() {
    local name=$1 host=$2; shift 2
    local pids=("$@")
    local url="http://$host/index.html"
    wait_http "$url" "$name"
    local metric run s0 s1 res rps p50 p99 reqs
    declare -A vals=()
    for run in $(seq 1 "$RUNS"); do
        log "$name: run $run/$RUNS keep-alive"
        s0=$(snapshot "${pids[@]}")
        res=$(run_wrk "$url")
        s1=$(snapshot "${pids[@]}")
        read -r rps p50 p99 reqs <<<"$res"
        vals[ka]+="$rps "
        vals[ka_p50]+="$p50 "
        vals[ka_p99]+="$p99 "
        record ka "$s0" "$s1" "$reqs"

        log "$name: run $run/$RUNS new connections (Connection: close)"
        s0=$(snapshot "${pids[@]}")
        res=$(run_wrk "$url" -H "Connection: close")
        s1=$(snapshot "${pids[@]}")
        read -r rps p50 p99 reqs <<<"$res"
        vals[cc]+="$rps "
        vals[cc_p50]+="$p50 "
        vals[cc_p99]+="$p99 "
        record cc "$s0" "$s1" "$reqs"

        log "$name: run $run/$RUNS iperf3 upload, download"
        vals[up]+="$(run_iperf "$host") "
        sleep 0.5
        vals[down]+="$(run_iperf "$host" -R) "
        sleep 0.5
        if ((UDP)) && [[ $name != haproxy && $name != nginx ]]; then
            log "$name: run $run/$RUNS 64-byte UDP"
            local rpps spps packets
            {
                read -r rpps spps packets
                read -r s0
                read -r s1
            } <<<"$(run_udp "$host" "${pids[@]}")"
            vals[udp]+="$rpps "
            vals[udp_sent]+="$spps "
            record udp "$s0" "$s1" "$packets"
            sleep 0.5
        fi
    done
    for metric in "${!vals[@]}"; do
        R[$KEY,$metric]=$(tr ' ' '\n' <<<"${vals[$metric]}" | grep -v '^$' | median)
    done
    log "$KEY: keep-alive ${R[$KEY,ka]} req/s, new conn ${R[$KEY,cc]}/s, up ${R[$KEY,up]} Gbit/s, down ${R[$KEY,down]} Gbit/s${R[$KEY,udp]:+, udp ${R[$KEY,udp]} pkt/s}"
    if [[ $LAB_WIRE == napi ]]; then
        local g line=""
        for g in "${NAPI_GROUPS[@]}"; do line+=" $g ${R[$KEY,ka_rx_$g]}"; done
        log "$KEY: balancer ${R[$KEY,ka_cpu]} µs per keep-alive request; receive threads:$line"
    fi
    [[ $PROFILE == "$name" ]] && profile "$name" "$url" "$host" "${pids[@]}"
    return 0
}

stop_pids() { # PID...: SIGTERM, then wait up to 5 s for each to be gone (SIGKILL after)
    kill -TERM "$@" 2>/dev/null || true
    local pid i
    for pid in "$@"; do
        for i in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null && log "pid $pid ignored SIGTERM for 5 s: killed"
        wait "$pid" 2>/dev/null || true
    done
}

rs_default_via() { # GATEWAY: the real servers' default route
    inns "$NS_RS1" ip route replace default via "$1"
    inns "$NS_RS2" ip route replace default via "$1"
}

# ---------------------------------------------------------------------------------------------
# Candidates.
bench_direct() {
    measure direct "$RS1"
}

bench_nft() {
    rs_default_via "$DIRECTOR"
    inns "$NS_DIR" nft -f - <<EOF
table ip $PREFIX {
    chain pre {
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr $VIP tcp dport 80 dnat to numgen inc mod 2 map { 0 : $RS1, 1 : $RS2 }
        ip daddr $VIP tcp dport 5201 dnat to $RS1
        ip daddr $VIP udp dport $UDP_PORT dnat to $RS1
    }
}
EOF
    measure nft "$VIP"
    inns "$NS_DIR" nft delete table ip "$PREFIX"
    rs_default_via "$ROUTER_LAN"
}

bench_haproxy() {
    inns "$NS_DIR" ip addr add "$VIP/32" dev lo
    cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4000
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend web
    bind $VIP:80
    default_backend web
backend web
    balance roundrobin
    server rs1 $RS1:80
    server rs2 $RS2:80
frontend perf
    bind $VIP:5201
    default_backend perf
backend perf
    server rs1 $RS1:5201
EOF
    ip netns exec "$NS_DIR" "${PIN_BALANCER[@]}" haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
    local pid=$!
    STARTED_PIDS+=("$pid")
    measure haproxy "$VIP" "$pid"
    stop_pids "$pid"
    inns "$NS_DIR" ip addr del "$VIP/32" dev lo
}

bench_nginx() {
    inns "$NS_DIR" ip addr add "$VIP/32" dev lo
    cat >"$WORK/nginx-lb.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1;
daemon off;
pid $WORK/nginx-lb.pid;
error_log $WORK/nginx-lb.err warn;
events { worker_connections 4096; }
stream {
    upstream web { server $RS1:80; server $RS2:80; }
    server { listen $VIP:80 backlog=4096; proxy_pass web; }
    server { listen $VIP:5201; proxy_pass $RS1:5201; }
}
EOF
    ip netns exec "$NS_DIR" "${PIN_BALANCER[@]}" nginx -c "$WORK/nginx-lb.conf" -e "$WORK/nginx-lb.err" \
        >"$WORK/nginx-lb.log" 2>&1 &
    local pid=$!
    STARTED_PIDS+=("$pid")
    measure nginx "$VIP" "$pid"
    stop_pids "$pid"
    inns "$NS_DIR" ip addr del "$VIP/32" dev lo
}

adm() { inns "$NS_DIR" "$TUNLB" adm "$@" >/dev/null; }

# bench_tunlb NAME MODE(tun|dr|nat) [ENCAP]
bench_tunlb() {
    local name=$1 mode=$2 encap=${3:-}
    local agents=() flag rport80="" rport5201=""
    case $mode in
    tun) flag=(-i --tun-type "$encap") ;;
    dr) flag=(-g) ;;
    nat)
        flag=(-m)
        rport80=":80"
        rport5201=":5201"
        rs_default_via "$DIRECTOR"
        ;;
    esac
    local extra=()
    [[ $name == *-nooffload ]] && extra=(--no-offload)
    ip netns exec "$NS_DIR" "${PIN_BALANCER[@]}" "$TUNLB" director --queues 1 --tunnel-mtu 1600 \
        --tun-name "tlbd-${name:0:10}" "${extra[@]}" "${DIRECTOR_EXTRA[@]}" >"$WORK/director-$name.log" 2>&1 &
    local pid=$!
    STARTED_PIDS+=("$pid")
    local i
    for i in $(seq 1 50); do
        inns "$NS_DIR" "$TUNLB" adm -L -n >/dev/null 2>&1 && break
        kill -0 "$pid" 2>/dev/null || die "tunlb director exited: $(tail -5 "$WORK/director-$name.log")"
        sleep 0.1
    done
    if [[ $mode != nat ]]; then
        local ns
        for ns in "$NS_RS1" "$NS_RS2"; do
            local args=(realserver --vip "$VIP" --tun-name "tlbr-${name:0:10}")
            if [[ $mode == tun ]]; then
                # -nooffload: the agents too (no UDP_GRO, no TUN virtio header).
                args+=(--encap "$encap" --allow "$DIRECTOR" "${extra[@]}")
            else
                args+=(--mode dr)
            fi
            ip netns exec "$ns" "${PIN_SERVER[@]}" "$TUNLB" "${args[@]}" "${AGENT_EXTRA[@]}" \
                >"$WORK/agent-$name-$ns.log" 2>&1 &
            agents+=($!)
            STARTED_PIDS+=($!)
        done
        for ns in "$NS_RS1" "$NS_RS2"; do
            for i in $(seq 1 50); do
                inns "$ns" ip -o addr show dev lo | grep -q "$VIP/32" && break
                sleep 0.1
            done
        done
    fi
    adm -A -t "$VIP:80" -s rr
    adm -a -t "$VIP:80" -r "$RS1$rport80" "${flag[@]}" -w 1
    adm -a -t "$VIP:80" -r "$RS2$rport80" "${flag[@]}" -w 1
    adm -A -t "$VIP:5201" -s rr
    adm -a -t "$VIP:5201" -r "$RS1$rport5201" "${flag[@]}" -w 1
    # The UDP packet-rate load (udpblast's sink on rs1 never answers, so it does not matter
    # which address a reply would come from).
    adm -A -u "$VIP:$UDP_PORT" -s rr
    if [[ $mode == nat ]]; then
        adm -a -u "$VIP:$UDP_PORT" -r "$RS1:$UDP_PORT" -m -w 1
    else
        adm -a -u "$VIP:$UDP_PORT" -r "$RS1" "${flag[@]}" -w 1
    fi
    measure "$name" "$VIP" "$pid"
    stop_pids "$pid" "${agents[@]}"
    [[ $mode == nat ]] && rs_default_via "$ROUTER_LAN"
    return 0
}

# ---------------------------------------------------------------------------------------------
MODEL=$(lscpu | awk -F: '/Model name/{gsub(/^ +/, "", $2); print $2; exit}')
MACHINE="$MODEL, $(nproc) CPUs, Linux $(uname -r)"
log "machine: $MACHINE"
if ((PINNED)); then
    PINNING="client cpu $CLIENT_CPU, balancer cpu $BALANCER_CPU, real servers cpu $SERVER_CPU"
else
    PINNING="not pinned (CPUs out of range or no taskset)"
fi
WIRING="wire $WIRE"
[[ " ${WIRES[*]} " == *" napi "* ]] &&
    WIRING+=" (receive threads: client's NIC cpu $NAPI_CLIENT_CPU, router cpu $NAPI_ROUTER_CPU, director's NIC cpu $NAPI_DIRECTOR_CPU, real servers' NICs cpu $NAPI_SERVER_CPU)"
[[ " ${WIRES[*]} " == *" napi "* ]] && ((UDP_GRO_FWD)) && WIRING+=", rx-udp-gro-forwarding on the director's NIC"
log "runs $RUNS x ${DURATION}s, wrk -t1 -c$CONNS; $PINNING"
log "$WIRING"
((${#DIRECTOR_EXTRA[@]})) && log "director arguments added: ${DIRECTOR_EXTRA[*]}"
((${#AGENT_EXTRA[@]})) && log "agent arguments added: ${AGENT_EXTRA[*]}"
log "peers: $(haproxy -v | head -1 | awk '{print "HAProxy", $3}'), $(nginx -v 2>&1 | sed 's|.*/|nginx |'), $("$TUNLB" --version 2>/dev/null || echo tunlb)"

# KEYS: the results' keys in order, CANDIDATE or, with several wires, CANDIDATE@WIRE.
KEYS=()
for c in $CANDIDATES; do
    for w in "${WIRES[@]}"; do
        KEY=$c
        ((${#WIRES[@]} > 1)) && KEY="$c@$w"
        KEYS+=("$KEY")
        build_lab "$w"
        case $c in
        direct) bench_direct ;;
        nft) bench_nft ;;
        haproxy) bench_haproxy ;;
        nginx) bench_nginx ;;
        tun-ipip | tun-ipip-nooffload) bench_tunlb "$c" tun ipip ;;
        tun-gue | tun-gue-nooffload) bench_tunlb "$c" tun gue ;;
        dr | dr-nooffload) bench_tunlb "$c" dr ;;
        nat | nat-nooffload) bench_tunlb "$c" nat ;;
        *) die "unknown candidate $c" ;;
        esac
        destroy_lab
    done
done

# ---------------------------------------------------------------------------------------------
# The table.
label() { # KEY: CANDIDATE or CANDIDATE@WIRE
    case $1 in
    *@*) echo "$(label "${1%@*}") [${1#*@}]" ;;
    direct) echo "direct, no balancer" ;;
    nft) echo "kernel nftables DNAT" ;;
    haproxy) echo "HAProxy mode tcp" ;;
    nginx) echo "nginx stream" ;;
    tun-ipip) echo "tunlb TUN (ipip)" ;;
    tun-gue) echo "tunlb TUN (gue)" ;;
    dr) echo "tunlb DR" ;;
    nat) echo "tunlb NAT" ;;
    *-nooffload) echo "$(label "${1%-nooffload}") --no-offload" ;;
    esac
}
base() { # KEY → the key of direct on the same wire
    if [[ $1 == *@* ]]; then echo "direct@${1#*@}"; else echo direct; fi
}
fmt_ratio() { # VALUE BASE SCALE UNIT
    awk -v v="$1" -v b="$2" -v s="$3" -v u="$4" 'BEGIN {
        if (v == "") { print "–"; exit }
        r = (b > 0) ? sprintf(" (%.2f)", v / b) : ""
        printf "%.1f%s%s\n", v / s, u, r }'
}
# cpu_cell KEY KIND(ka|cc|udp): the balancer's CPU; with WIRE=napi "+ its NIC's receive thread".
cpu_cell() {
    local c=$1 k=$2 d
    d=$(base "$c")
    if [[ ${c%@*} == direct || -z "${R[$c,${k}_cpu]:-}" ]]; then echo "–"; return; fi
    awk -v p="${R[$c,${k}_cpu]:-0}" -v rx="${R[$c,${k}_rx_director]:-}" -v nft="$([[ ${c%@*} == nft ]] && echo 1)" \
        -v m="${R[$c,${k}_mcpu]:-0}" -v d="${R[$d,${k}_mcpu]:-0}" 'BEGIN {
        if (nft && rx != "") printf "%.1f µs rx (machine − direct: %.1f µs)\n", rx, m - d
        else if (nft) printf "%.1f µs (machine − direct)\n", m - d
        else if (rx != "") printf "%.1f µs + %.1f µs rx\n", p, rx
        else printf "%.1f µs\n", p }'
}
rx_cell() { # KEY GROUP: the GROUP receive threads' µs per keep-alive request / new conn / UDP packet
    awk -v a="${R[$1,ka_rx_$2]:-}" -v b="${R[$1,cc_rx_$2]:-}" -v c="${R[$1,udp_rx_$2]:-}" 'BEGIN {
        printf "%.1f / %.1f / %s\n", a, b, (c == "") ? "–" : sprintf("%.1f", c) }'
}
NAPI_RUN=0
for k in "${KEYS[@]}"; do [[ -n "${R[$k,ka_rx_director]:-}" ]] && NAPI_RUN=1; done
{
    echo
    echo "Machine: $MACHINE. Runs: median of $RUNS x ${DURATION}s; wrk -t1 -c$CONNS; $PINNING; $WIRING."
    ((${#DIRECTOR_EXTRA[@]})) && echo "Director arguments added: ${DIRECTOR_EXTRA[*]}."
    ((${#AGENT_EXTRA[@]})) && echo "Agent arguments added: ${AGENT_EXTRA[*]}."
    echo
    echo "| path | keep-alive req/s | p50 / p99 | new conn/s | p50 / p99 | upload Gbit/s | download Gbit/s | UDP 64 B pkt/s | balancer CPU per KA request | per new conn | per UDP packet |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    for c in "${KEYS[@]}"; do
        d=$(base "$c")
        udp="–"
        [[ -n "${R[$c,udp]:-}" ]] && udp=$(fmt_ratio "${R[$c,udp]}" "${R[$d,udp]:-0}" 1e3 k)
        printf '| %s | %s | %s / %s µs | %s | %s / %s µs | %s | %s | %s | %s | %s | %s |\n' \
            "$(label "$c")" \
            "$(fmt_ratio "${R[$c,ka]}" "${R[$d,ka]:-0}" 1e3 k)" \
            "$(printf %.0f "${R[$c,ka_p50]}")" "$(printf %.0f "${R[$c,ka_p99]}")" \
            "$(fmt_ratio "${R[$c,cc]}" "${R[$d,cc]:-0}" 1e3 k)" \
            "$(printf %.0f "${R[$c,cc_p50]}")" "$(printf %.0f "${R[$c,cc_p99]}")" \
            "$(fmt_ratio "${R[$c,up]}" "${R[$d,up]:-0}" 1 "")" \
            "$(fmt_ratio "${R[$c,down]}" "${R[$d,down]:-0}" 1 "")" \
            "$udp" "$(cpu_cell "$c" ka)" "$(cpu_cell "$c" cc)" "$(cpu_cell "$c" udp)"
    done
    if ((NAPI_RUN)); then
        echo
        echo "With WIRE=napi the balancer's cell is its process + its host's NIC receive thread (\"rx\"; for"
        echo "kernel DNAT, which has no process, the receive thread is where all of its work runs)."
        echo
        echo "Receive (NAPI) threads' CPU, µs per keep-alive request / new conn / UDP packet, by the host whose NIC receives:"
        for c in "${KEYS[@]}"; do
            [[ -n "${R[$c,ka_rx_director]:-}" ]] || continue
            printf -- '- %s: director %s; router %s; real servers %s; client %s\n' "$(label "$c")" \
                "$(rx_cell "$c" director)" "$(rx_cell "$c" router)" "$(rx_cell "$c" servers)" "$(rx_cell "$c" client)"
        done
    fi
    echo
    echo "Whole-machine busy CPU per request (µs, keep-alive / new conn), for reference:"
    for c in "${KEYS[@]}"; do
        printf -- '- %s: %.1f / %.1f\n' "$(label "$c")" "${R[$c,ka_mcpu]}" "${R[$c,cc_mcpu]}"
    done
    if ((UDP)); then
        echo
        echo "UDP load: tunlb udpblast, 64-byte payloads from $UDP_FLOWS source ports; pkt/s received by the sink (sent by the generator):"
        for c in "${KEYS[@]}"; do
            [[ -n "${R[$c,udp]:-}" ]] || continue
            printf -- '- %s: %.0f received (%.0f sent), machine busy CPU %.2f µs per received packet\n' \
                "$(label "$c")" "${R[$c,udp]}" "${R[$c,udp_sent]}" "${R[$c,udp_mcpu]}"
        done
    fi
    if ((${#PROFILES[@]})); then
        echo
        echo "Profiles (perf report --no-children --percent-limit 2):"
        printf -- '- %s\n' "${PROFILES[@]}"
    fi
}
log "done"
