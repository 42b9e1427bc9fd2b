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
# (source ports of the UDP load, 8), CLIENT_CPU (0), SERVER_CPU (1),
# TUNLB (path of the tunlb binary; default: target/release/tunlb, built first).
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
# link is 1500, so every candidate sees the same MSS. The load generator runs on CLIENT_CPU; the
# balancer and the real servers on SERVER_CPU.
#
# The director's CPU per request is the balancer process's utime+stime (all its threads, and
# nginx's workers) over the wrk run divided by the requests (for the UDP load: by the packets
# the sink received); for kernel DNAT, which has no
# process, it is the whole machine's busy CPU per request minus the direct path's (so it also
# contains the extra softirq work of the hop through the director).
set -euo pipefail

RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-50}
UDP=${UDP:-1}
UDP_FLOWS=${UDP_FLOWS:-8}
CLIENT_CPU=${CLIENT_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
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

NCPU=$(nproc)
PIN_CLIENT=()
PIN_SERVER=()
if ((NCPU > SERVER_CPU && NCPU > CLIENT_CPU)) && command -v taskset >/dev/null; then
    PIN_CLIENT=(taskset -c "$CLIENT_CPU")
    PIN_SERVER=(taskset -c "$SERVER_CPU")
fi

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
LAB=0
# build_lab: a fresh copy of the topology (and real servers) for the next candidate, so no state
# (conntrack entries, TIME_WAIT sockets, neighbour or path-MTU caches) leaks between candidates.
build_lab() {
    LAB=$((LAB + 1))
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
    jq -r '.end.sum_received.bits_per_second / 1e9' <<<"$out" 2>/dev/null || {
        log "iperf3 $* gave no result: $(jq -r '.error // empty' <<<"$out" 2>/dev/null)"
        echo 0
    }
}

# 64-byte UDP packet rate with `tunlb udpblast`: a sink (recvmmsg) on rs1, bound to the
# wildcard so it also takes datagrams for the hidden VIP, and a generator (sendmmsg, UDP_FLOWS
# source ports) in the client, both bounded in time and count.
# run_udp HOST PIDS... → prints "received_pps sent_pps cpu_us_per_received_packet machine_us_per_packet"
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
    local t0 m0 t1 m1 sent
    t0=$( (($#)) && proc_ticks "$@" || echo 0)
    m0=$(machine_busy)
    sent=$(timeout $((DURATION + 5)) ip netns exec "$NS_CLIENT" "${PIN_CLIENT[@]}" \
        "$TUNLB" udpblast send --to "$host:$UDP_PORT" --size 64 --duration "$DURATION" \
        --max-packets $((DURATION * 5000000)) --flows "$UDP_FLOWS" 2>>"$WORK/udp-send.log") ||
        log "udpblast send failed: $(tail -2 "$WORK/udp-send.log")"
    t1=$( (($#)) && proc_ticks "$@" || echo 0)
    m1=$(machine_busy)
    wait "$sink" 2>/dev/null || log "udpblast sink failed: $(tail -2 "$sink_log")"
    echo "$sent" >>"$WORK/udp-send.json"
    local got spps
    got=$(jq -r '"\(.packets) \(.pps)"' "$sink_out" 2>/dev/null || echo "0 0")
    spps=$(jq -r '.pps' <<<"$sent" 2>/dev/null || echo 0)
    read -r packets rpps <<<"$got"
    awk -v p="${packets:-0}" -v r="${rpps:-0}" -v s="${spps:-0}" -v d=$((t1 - t0)) -v m=$((m1 - m0)) \
        -v hz="$HZ" 'BEGIN { printf "%s %s %s %s\n", r, s,
            (p > 0) ? d / hz / p * 1e6 : 0, (p > 0) ? m / hz / p * 1e6 : 0 }'
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) print 0; else if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

declare -A R # R[candidate,metric] = median

# measure NAME TARGET_HOST PIDS...: every load RUNS times, medians into R.
measure() {
    local name=$1 host=$2; shift 2
    local pids=("$@")
    local url="http://$host/index.html"
    wait_http "$url" "$name"
    local metric run
    declare -A vals=()
    for run in $(seq 1 "$RUNS"); do
        log "$name: run $run/$RUNS keep-alive"
        local t0 m0 res t1 m1
        t0=$( ((${#pids[@]})) && proc_ticks "${pids[@]}" || echo 0)
        m0=$(machine_busy)
        res=$(run_wrk "$url")
        t1=$( ((${#pids[@]})) && proc_ticks "${pids[@]}" || echo 0)
        m1=$(machine_busy)
        read -r rps p50 p99 reqs <<<"$res"
        vals[ka]+="$rps "
        vals[ka_p50]+="$p50 "
        vals[ka_p99]+="$p99 "
        vals[ka_cpu]+="$(awk -v d=$((t1 - t0)) -v r="$reqs" -v hz="$HZ" 'BEGIN{print (r > 0) ? d / hz / r * 1e6 : 0}') "
        vals[ka_mcpu]+="$(awk -v d=$((m1 - m0)) -v r="$reqs" -v hz="$HZ" 'BEGIN{print (r > 0) ? d / hz / r * 1e6 : 0}') "

        log "$name: run $run/$RUNS new connections (Connection: close)"
        t0=$( ((${#pids[@]})) && proc_ticks "${pids[@]}" || echo 0)
        m0=$(machine_busy)
        res=$(run_wrk "$url" -H "Connection: close")
        t1=$( ((${#pids[@]})) && proc_ticks "${pids[@]}" || echo 0)
        m1=$(machine_busy)
        read -r rps p50 p99 reqs <<<"$res"
        vals[cc]+="$rps "
        vals[cc_p50]+="$p50 "
        vals[cc_p99]+="$p99 "
        vals[cc_cpu]+="$(awk -v d=$((t1 - t0)) -v r="$reqs" -v hz="$HZ" 'BEGIN{print (r > 0) ? d / hz / r * 1e6 : 0}') "
        vals[cc_mcpu]+="$(awk -v d=$((m1 - m0)) -v r="$reqs" -v hz="$HZ" 'BEGIN{print (r > 0) ? d / hz / r * 1e6 : 0}') "

        log "$name: run $run/$RUNS iperf3 upload, download"
        vals[up]+="$(run_iperf "$host") "
        sleep 0.5
        vals[down]+="$(run_iperf "$host" -R) "
        sleep 0.5
        if ((UDP)) && [[ $name != haproxy && $name != nginx ]]; then
            log "$name: run $run/$RUNS 64-byte UDP"
            read -r rpps spps ucpu umcpu <<<"$(run_udp "$host" "${pids[@]}")"
            vals[udp]+="$rpps "
            vals[udp_sent]+="$spps "
            vals[udp_cpu]+="$ucpu "
            vals[udp_mcpu]+="$umcpu "
            sleep 0.5
        fi
    done
    for metric in "${!vals[@]}"; do
        R[$name,$metric]=$(tr ' ' '\n' <<<"${vals[$metric]}" | grep -v '^$' | median)
    done
    log "$name: keep-alive ${R[$name,ka]} req/s, new conn ${R[$name,cc]}/s, up ${R[$name,up]} Gbit/s, down ${R[$name,down]} Gbit/s${R[$name,udp]:+, udp ${R[$name,udp]} pkt/s}"
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
    ip netns exec "$NS_DIR" "${PIN_SERVER[@]}" haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
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
    ip netns exec "$NS_DIR" "${PIN_SERVER[@]}" nginx -c "$WORK/nginx-lb.conf" -e "$WORK/nginx-lb.err" \
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
    ip netns exec "$NS_DIR" "${PIN_SERVER[@]}" "$TUNLB" director --queues 1 --tunnel-mtu 1600 \
        --tun-name "tlbd-${name:0:10}" "${extra[@]}" >"$WORK/director-$name.log" 2>&1 &
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
            ip netns exec "$ns" "${PIN_SERVER[@]}" "$TUNLB" "${args[@]}" >"$WORK/agent-$name-$ns.log" 2>&1 &
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
log "runs $RUNS x ${DURATION}s, wrk -t1 -c$CONNS, client on cpu $CLIENT_CPU, balancer and servers on cpu $SERVER_CPU"
log "peers: $(haproxy -v | head -1 | awk '{print "HAProxy", $3}'), $(nginx -v 2>&1 | sed 's|.*/|nginx |'), $("$TUNLB" --version 2>/dev/null || echo tunlb)"

for c in $CANDIDATES; do
    build_lab
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

# ---------------------------------------------------------------------------------------------
# The table.
label() {
    case $1 in
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
fmt_ratio() { # VALUE BASE SCALE UNIT
    awk -v v="$1" -v b="$2" -v s="$3" -v u="$4" 'BEGIN {
        if (v == "") { print "–"; exit }
        r = (b > 0) ? sprintf(" (%.2f)", v / b) : ""
        printf "%.*f%s%s\n", (s == 1e9 ? 1 : 1), v / s, u, r }'
}
cpu_cell() { # CANDIDATE KIND(ka|cc|udp)
    local c=$1 k=$2
    if [[ $c == direct || -z "${R[$c,${k}_cpu]:-}" ]]; then echo "–"; return; fi
    if [[ $c == nft ]]; then
        awk -v m="${R[$c,${k}_mcpu]:-0}" -v d="${R[direct,${k}_mcpu]:-0}" \
            'BEGIN { printf "%.1f µs (machine − direct)\n", m - d }'
    else
        awk -v p="${R[$c,${k}_cpu]:-0}" 'BEGIN { printf "%.1f µs\n", p }'
    fi
}
{
    echo
    echo "Machine: $MACHINE. Runs: median of $RUNS x ${DURATION}s; wrk -t1 -c$CONNS."
    echo
    echo "| path | keep-alive req/s | p50 / p99 | new conn/s | p50 / p99 | upload Gbit/s | download Gbit/s | UDP 64 B pkt/s | balancer CPU per KA request | per new conn | per UDP packet |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    for c in $CANDIDATES; do
        udp="–"
        [[ -n "${R[$c,udp]:-}" ]] && udp=$(fmt_ratio "${R[$c,udp]}" "${R[direct,udp]:-0}" 1e3 k)
        printf '| %s | %s | %s / %s µs | %s | %s / %s µs | %s | %s | %s | %s | %s | %s |\n' \
            "$(label "$c")" \
            "$(fmt_ratio "${R[$c,ka]}" "${R[direct,ka]:-0}" 1e3 k)" \
            "$(printf %.0f "${R[$c,ka_p50]}")" "$(printf %.0f "${R[$c,ka_p99]}")" \
            "$(fmt_ratio "${R[$c,cc]}" "${R[direct,cc]:-0}" 1e3 k)" \
            "$(printf %.0f "${R[$c,cc_p50]}")" "$(printf %.0f "${R[$c,cc_p99]}")" \
            "$(fmt_ratio "${R[$c,up]}" "${R[direct,up]:-0}" 1 "")" \
            "$(fmt_ratio "${R[$c,down]}" "${R[direct,down]:-0}" 1 "")" \
            "$udp" "$(cpu_cell "$c" ka)" "$(cpu_cell "$c" cc)" "$(cpu_cell "$c" udp)"
    done
    echo
    echo "Whole-machine busy CPU per request (µs, keep-alive / new conn), for reference:"
    for c in $CANDIDATES; do
        printf -- '- %s: %.1f / %.1f\n' "$(label "$c")" "${R[$c,ka_mcpu]}" "${R[$c,cc_mcpu]}"
    done
    if ((UDP)); then
        echo
        echo "UDP load: tunlb udpblast, 64-byte payloads from $UDP_FLOWS source ports; pkt/s received by the sink (sent by the generator):"
        for c in $CANDIDATES; do
            [[ -n "${R[$c,udp]:-}" ]] || continue
            printf -- '- %s: %.0f received (%.0f sent), machine busy CPU %.2f µs per received packet\n' \
                "$(label "$c")" "${R[$c,udp]}" "${R[$c,udp_sent]}" "${R[$c,udp_mcpu]}"
        done
    fi
}
log "done"
