#!/usr/bin/env bash
# The soak (issue 13, item 8): steady client load through two directors for SOAK_SECONDS
# (600 by default), while everything that changes a director's state keeps happening:
#
#   every second     `tunlb adm --reload` in both directors
#   every minute at  +5 s  a SYN flood burst: FLOOD_PAIRS spoofed SYN + ACK pairs (`tunlb lab
#                          synflood`, from 198.18.0.0/15, which the router black-holes)
#                   +15 s  real server 2's httpd stopped (its HTTP_GET check takes it out)
#                   +35 s  ... and started again (the check puts it back)
#                   +45 s  a director restarted (SIGTERM, then the same command line): the
#                          backup in even minutes, the master in odd ones (VRRP failover and
#                          preemption; connection sync keeps the flows)
#
# The lab is `tunlb lab up --ha` (client and two directors on one LAN, VRRP MASTER/BACKUP with
# lvs_sync_daemon, two real servers in TUN mode behind a router) under the prefix `soak<pid>`.
# The client load is `tunlb lab clients` in rounds of a minute: CONNS keep-alive connections
# each sending a request every 100 ms, and a new connection every 100 ms that must be answered
# within 3 s (a SYN retransmitted once still counts as answered).
#
# Output: one line per 10 s with the RSS and open file descriptors of each daemon (both
# directors, both agents), then a report: requests and failures (failures split into those to
# the real server that was down at the time, and all others), the restarts, reloads and
# floods done, memory and descriptors first/last/max per daemon, and a verdict (flat or not).
#
#   sudo scripts/soak.sh                      # 10 minutes
#   sudo SOAK_SECONDS=120 scripts/soak.sh     # a quick run
#
# Environment: SOAK_SECONDS (600, at least 60), CONNS (20), FLOOD_PAIRS (20000 per burst),
# FLOOD_RATE (pairs per second, 5000), TUNLB (the binary; default target/debug/tunlb, built
# with `cargo build` if missing), REPORT (a file the report is also written to), KEEP=1 (keep
# the work folder with every log; it is printed).
#
# Needs root, ip, python3. Everything runs in namespaces named soak<pid>-*; on every exit path
# (end, error, Ctrl-C, SIGTERM) the processes this script started are stopped and `tunlb lab
# down` removes the lab.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $EUID -ne 0 ]]; then
    echo "soak.sh: needs root (it builds network namespaces); run: sudo $0" >&2
    exit 1
fi
for tool in ip python3; do
    type -P "$tool" >/dev/null || { echo "soak.sh: $tool is not installed" >&2; exit 1; }
done

SOAK_SECONDS=${SOAK_SECONDS:-600}
CONNS=${CONNS:-20}
FLOOD_PAIRS=${FLOOD_PAIRS:-20000}
FLOOD_RATE=${FLOOD_RATE:-5000}
if ! [[ $SOAK_SECONDS =~ ^[0-9]+$ ]] || ((SOAK_SECONDS < 60 || SOAK_SECONDS > 7200)); then
    echo "soak.sh: SOAK_SECONDS must be a number of seconds from 60 to 7200" >&2
    exit 1
fi
TUNLB=${TUNLB:-$PWD/target/debug/tunlb}
if [[ ! -x $TUNLB ]]; then
    echo "soak.sh: building $TUNLB" >&2
    cargo build
fi
TUNLB=$(realpath "$TUNLB")

prefix="soak$$"
work=$(mktemp -d /tmp/tunlb-soak.XXXXXX)
state=/run/tunlb-lab/$prefix
VIP=192.168.150.100
RS2=192.168.160.13
own=()          # pids of the processes this script started (besides `tunlb lab up`'s)

now_ms() { date +%s%3N; }
say() { printf '[soak] %s\n' "$*"; }
event() { echo "$(now_ms) $*" >>"$work/events"; }

# Whether pid $1 runs (a zombie, one of ours not yet reaped, does not).
alive() {
    [[ -r /proc/$1/stat ]] || return 1
    local st
    st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [[ $st != Z && -n $st ]]
}

# Sends SIGTERM to pid $1 and waits up to $2 seconds for it to end (then SIGKILL).
stop_pid() {
    local pid=$1 grace=${2:-5} i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < grace * 20; i++)); do
        alive "$pid" || break
        sleep 0.05
    done
    alive "$pid" && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for pid in "${own[@]}"; do
        alive "$pid" && kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${own[@]}"; do
        stop_pid "$pid" 3
    done
    "$TUNLB" lab down --prefix "$prefix" >"$work/lab-down.log" 2>&1 ||
        echo "soak.sh: tunlb lab down --prefix $prefix failed; see $work/lab-down.log" >&2
    if ip netns list | grep -q "^$prefix-"; then
        echo "soak.sh: namespaces of $prefix are left: $(ip netns list | grep "^$prefix-" | tr '\n' ' ')" >&2
        rc=1
    fi
    if [[ ${KEEP:-0} == 1 || $rc != 0 ]]; then
        echo "soak.sh: logs kept in $work" >&2
    else
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs tunlb in the lab namespace $1 (`client`, `director`, `backup`, `rs1`, ...).
in_ns() {
    local ns=$prefix-$1
    shift
    ip netns exec "$ns" "$TUNLB" "$@"
}

# The pid `tunlb lab up` recorded for label $2 ("tunlb director", ...) in namespace role $1.
recorded_pid() {
    awk -v ns="$prefix-$1" -v label="$2" \
        '{ l = $0; sub(/^[^ ]+ [^ ]+ [^ ]+ /, "", l) } $3 == ns && l == label { print $1 }' \
        "$state/pids" | tail -n1
}

say "tunlb: $TUNLB ($(date -r "$TUNLB" -u +%FT%TZ)); work folder $work"
say "building the lab: tunlb lab up --ha --prefix $prefix"
if ! "$TUNLB" lab up --ha --prefix "$prefix" --requests 2 >"$work/lab-up.log" 2>&1; then
    tail -n 30 "$work/lab-up.log" >&2
    exit 1
fi
ip -n "$prefix-router" route add blackhole 198.18.0.0/15

declare -A pid
pid[director]=$(recorded_pid director "tunlb director")
pid[backup]=$(recorded_pid backup "tunlb director")
pid[rs1-agent]=$(recorded_pid rs1 "tunlb realserver")
pid[rs2-agent]=$(recorded_pid rs2 "tunlb realserver")
rs2_httpd=$(recorded_pid rs2 "tunlb httpd")
daemons=(director backup rs1-agent rs2-agent)
for d in "${daemons[@]}"; do
    [[ -n ${pid[$d]} ]] || { echo "soak.sh: no pid recorded for $d in $state/pids" >&2; exit 1; }
done
say "daemons: $(for d in "${daemons[@]}"; do printf '%s %s  ' "$d" "${pid[$d]}"; done)"

# Restarts director role $1 (director or backup) with its keepalived.conf.
restart_director() {
    local role=$1 t0 i
    t0=$(now_ms)
    event restart-begin "$role"
    stop_pid "${pid[$role]}" 10
    ip netns exec "$prefix-$role" "$TUNLB" director --keepalived-conf "$state/$role-keepalived.conf" \
        >>"$work/$role-restarted.log" 2>&1 &
    pid[$role]=$!
    own+=("${pid[$role]}")
    for ((i = 0; i < 200; i++)); do
        in_ns "$role" adm -L -n >/dev/null 2>&1 && break
        sleep 0.05
    done
    event restart-ready "$role"
    say "restarted the $role director (pid ${pid[$role]}) in $(($(now_ms) - t0)) ms"
}

# One line of samples: RSS and fds of every daemon.
sample() {
    local t=$1 line="t=$(printf '%4d' "$t")s" d p rss fds
    for d in "${daemons[@]}"; do
        p=${pid[$d]}
        rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)
        fds=$(find "/proc/$p/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
        line+=$(printf ' | %s %s: %6.1f MB %3d fds' "$d" "$p" "$(awk -v k="${rss:-0}" 'BEGIN { print k / 1024 }')" "$fds")
        echo "$t $d $p ${rss:-0} $fds" >>"$work/samples"
    done
    echo "$line"
}

start_s=$(date +%s)
event start soak
reloads=0 reload_failures=0 floods=0 flaps=0 restarts=0 next_sample=0 round=0
declare -A done_
say "soaking for $SOAK_SECONDS s"
while :; do
    t=$(($(date +%s) - start_s))
    ((t < SOAK_SECONDS)) || break
    m=$((t / 60)) off=$((t % 60))
    if [[ -z ${done_[$m-clients]:-} ]]; then
        done_[$m-clients]=1
        left=$((SOAK_SECONDS - t - 1))
        ((left > 58)) && left=58
        if ((left >= 5)); then
            round=$((round + 1))
            in_ns client lab clients --to "$VIP:80" --conns "$CONNS" --interval-ms 100 \
                --probe-every-ms 100 --probe-timeout-ms 3000 --duration "$left" \
                --status-every 0 >"$work/clients-$round.out" 2>&1 &
            own+=($!)
        fi
    fi
    if ((off >= 5)) && [[ -z ${done_[$m-flood]:-} ]]; then
        done_[$m-flood]=1
        floods=$((floods + 1))
        event flood "$FLOOD_PAIRS"
        in_ns client lab synflood --to "$VIP:80" --pairs "$FLOOD_PAIRS" --rate "$FLOOD_RATE" \
            --seconds 20 >"$work/flood-$floods.out" 2>"$work/flood-$floods.log" &
        own+=($!)
    fi
    if ((off >= 15)) && [[ -z ${done_[$m-down]:-} ]]; then
        done_[$m-down]=1
        event down "$RS2"
        stop_pid "$rs2_httpd" 5
        say "real server $RS2: httpd stopped"
    fi
    if ((off >= 35)) && [[ -z ${done_[$m-up]:-} ]]; then
        done_[$m-up]=1
        ip netns exec "$prefix-rs2" "$TUNLB" httpd --listen "$VIP:80" --banner "from $RS2" \
            --listen "$RS2:80" >>"$work/rs2-httpd.log" 2>&1 &
        rs2_httpd=$!
        own+=("$rs2_httpd")
        event up "$RS2"
        flaps=$((flaps + 1))
        say "real server $RS2: httpd started again"
    fi
    if ((off >= 45)) && [[ -z ${done_[$m-restart]:-} ]]; then
        done_[$m-restart]=1
        if ((m % 2 == 0)); then restart_director backup; else restart_director director; fi
        restarts=$((restarts + 1))
    fi
    for role in director backup; do
        reloads=$((reloads + 1))
        if ! in_ns "$role" adm --reload >>"$work/reload.log" 2>&1; then
            reload_failures=$((reload_failures + 1))
            event reload-failed "$role"
        fi
    done
    if ((t >= next_sample)); then
        sample "$t"
        next_sample=$((next_sample + 10))
    fi
    # Sleep to the next whole second.
    wait_ms=$((1000 - $(date +%s%3N) % 1000))
    sleep "$((wait_ms / 1000)).$(printf '%03d' $((wait_ms % 1000)))"
done
sample "$(($(date +%s) - start_s))"
event end soak
say "waiting for the last client round"
for p in "${own[@]}"; do
    # Floods and client rounds end by themselves within their bounds.
    if [[ $({ tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null) == *" lab "* ]]; then
        for ((i = 0; i < 1200; i++)); do alive "$p" || break; sleep 0.05; done
    fi
done

set +e
python3 - "$work" "$RS2" "$SOAK_SECONDS" "$reloads" "$reload_failures" "$floods" "$flaps" \
    "$restarts" "$FLOOD_PAIRS" >"$work/report" <<'EOF'
import glob, json, re, statistics, sys

work, rs2, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3])
reloads, reload_failures, floods, flaps, restarts, pairs = map(int, sys.argv[4:10])

events = []
for line in open(f"{work}/events"):
    ms, kind, *rest = line.split()
    events.append((int(ms), kind, " ".join(rest)))
# Windows during which real server 2 was down: from its httpd's stop to its start (+1 s for
# answers in flight).
down = []
for ms, kind, _ in events:
    if kind == "down":
        down.append([ms, None])
    elif kind == "up" and down and down[-1][1] is None:
        down[-1][1] = ms + 1000
down = [(a, b if b is not None else 1 << 62) for a, b in down]
def in_down(ms):
    return any(a <= ms <= b for a, b in down)
def near(ms):
    best = min(events, key=lambda e: abs(e[0] - ms), default=None)
    return f"{best[1]} {best[2]} {(ms - best[0]) / 1000:+.1f} s" if best else "?"

rounds = requests = conns = lost_down = probes = probes_failed = probes_failed_down = 0
others = []
for path in sorted(glob.glob(f"{work}/clients-*.out"), key=lambda p: int(re.findall(r"\d+", p)[-1])):
    text = open(path).read()
    lines = [l for l in text.splitlines() if l.startswith("{")]
    if not lines:
        others.append(f"{path}: no summary (the client round failed): {text[-300:]!r}")
        continue
    s = json.loads(lines[-1])
    rounds += 1
    minute = int(re.findall(r"\d+", path)[-1]) - 1
    requests += s["requests"]
    conns += s["conns"]
    t0 = s["start_unix_ms"]
    if s["established"] < s["conns"]:
        others.append(f"minute {minute}: only {s['established']} of {s['conns']} connections established")
    for d in s["lost_detail"]:
        m = re.search(r"\(client port \d+, (.*?)\) at t=([\d.]+)s", d)
        at = t0 + int(float(m.group(2)) * 1000) if m else t0
        server = m.group(1) if m else "?"
        if server.endswith(rs2) and in_down(at):
            lost_down += 1
        else:
            others.append(f"minute {minute}: keep-alive lost: {d} (near: {near(at)})")
    probes += s["probes"]
    probes_failed += s["probes_failed"]
    for o in s["outages"]:
        at = t0 + o["start_ms"]
        if in_down(at):
            probes_failed_down += o["probes"]
        else:
            others.append(
                f"minute {minute}: {o['probes']} new connection(s) failed from "
                f"+{o['start_ms'] / 1000:.1f} s for {o['length_ms']} ms (near: {near(at)})")
flood_pairs = 0
for path in glob.glob(f"{work}/flood-*.out"):
    for l in open(path):
        if l.startswith("{"):
            flood_pairs += json.loads(l)["pairs"]
failed_other = probes_failed - probes_failed_down + sum(1 for o in others if "keep-alive lost" in o)

samples = {}
for line in open(f"{work}/samples"):
    t, d, p, rss, fds = line.split()
    samples.setdefault(d, []).append((int(t), int(p), int(rss), int(fds)))
verdicts = []
print()
print(f"soak report: {seconds} s, two directors (VRRP + sync), {rounds} client rounds")
print(f"  requests on keep-alive connections: {requests} ({conns} connections over the rounds)")
print(f"  new connections: {probes}, failed: {probes_failed} "
      f"({probes_failed_down} to the real server that was down)")
print(f"  keep-alive connections lost to the real server that was down: {lost_down}")
print(f"  failed requests beyond those to a server that was down: {failed_other}")
for o in others:
    print(f"    {o}")
print(f"  events: {restarts} director restarts, {flaps} health flaps of {rs2}, {floods} SYN "
      f"flood bursts ({flood_pairs} spoofed pairs sent), {reloads} adm --reload "
      f"({reload_failures} failed)")
print("  memory and descriptors of each daemon (first / last / max sample; from t=30 s):")
for d, rows in samples.items():
    rows = [r for r in rows if r[0] >= 30] or rows
    third = max(1, len(rows) // 3)
    first, last = rows[:third], rows[-third:]
    rss_first = statistics.median(r[2] for r in first)
    rss_last = statistics.median(r[2] for r in last)
    fds_first = max(r[3] for r in first)
    fds_last = max(r[3] for r in last)
    pids = len({r[1] for r in rows})
    flat = rss_last <= rss_first * 1.10 + 4096 and fds_last <= fds_first + 2
    verdicts.append(flat)
    print(f"    {d:10} {pids} process(es): RSS {rows[0][2] / 1024:.1f} / {rows[-1][2] / 1024:.1f} / "
          f"{max(r[2] for r in rows) / 1024:.1f} MB (median first third {rss_first / 1024:.1f}, "
          f"last third {rss_last / 1024:.1f}); fds {rows[0][3]} / {rows[-1][3]} / "
          f"{max(r[3] for r in rows)}: {'flat' if flat else 'GROWING'}")
ok = all(verdicts) and failed_other == 0 and reload_failures == 0
print(f"  verdict: memory and descriptors {'flat' if all(verdicts) else 'NOT flat'}; "
      f"{failed_other} failed requests beyond the down server; "
      f"{'PASS' if ok else 'FAIL'}")
sys.exit(0 if ok else 2)
EOF
rc=$?
set -e
cat "$work/report"
if [[ -n ${REPORT:-} ]]; then cp "$work/report" "$REPORT"; fi
exit "$rc"
