#!/usr/bin/env bash
# Fan-out benchmark: starts one node (on loopback, or NETNS=1 below) and runs the load tool
# against it for each bitrate and subscriber count, writing one JSON report per run to $OUT
# (default bench-out/). Every report has the node's own fan-out delay (stream hub to sendmmsg),
# scraped from its /metrics at the start and end of the window, next to the end-to-end delay
# (to the subscribers' sockets, from the kernel's receive timestamps, and to their readers).
# Usage: scripts/bench-fanout.sh [counts] [bitrates]   e.g. scripts/bench-fanout.sh "50 200 500" "600k 2M"
# Environment: INGEST (whip|srt), PROTOCOL (whep|srt|rtsp), SRT_LATENCY (e.g. 20ms, for node and
# load tool), DURATION (measurement window), OUT, PPROF (set: serve the node's profiler),
# BIN (a streamfleet binary to run instead of building ./bin/streamfleet from the tree),
# PACING (the WHIP publisher's video pacing factor, 0 for none; default: the load tool's, 2.5 as
# browsers pace; reports get the suffix -pacingP, and the text output a "pacer" line),
# PERF (set: perf record -g the node inside the window, to $OUT/perf-TAG.data),
# NETNS (1: the network-namespace topology below), PIN (set: the node on CPU 0 and the load tool
# on CPU 1 with taskset, so the two never preempt each other; the node then has one core, and
# Go sizes GOMAXPROCS to it; reports get the suffix -pinned), PACKET_SEND (set, as root: the node
# runs with --packet-send, sending its viewers' RTP through AF_PACKET rings; on loopback the script
# sets net.ipv4.conf.lo.accept_local and route_localnet for the run, which a datagram put on
# loopback from a 127/8 source needs, and restores them; reports get the suffix -packet).
#
# Topologies. Loopback (the default): node and load tool on 127.0.0.1. There the kernel runs the
# receiving socket's whole UDP receive path (ip_rcv, udp_rcv, queueing, waking the load tool's
# thread) in softirq inside the node's sendmmsg, so the node's CPU includes work that a real
# network does on the viewers' machines.
# NETNS=1 (root only; needs ethtool and tc): scripts/bench-netns.sh creates namespace sfbench and a
# veth pair, sfb0 10.200.0.1 on the host and sfb1 10.200.0.2 in the namespace, with GRO, threaded
# NAPI, TSO off, a pfifo_fast qdisc and timer-driven NAPI polling (gro_flush_timeout,
# napi_defer_hard_irqs) on both ends (why each is needed: that script's header), so a datagram
# crossing the veth is received by a napi/sfb1-N (or napi/sfb0-N) kernel thread and the node pays
# only for its own send path, as with a NIC. The node listens on 10.200.0.1, the load tool runs in
# the namespace (ip netns exec) and samples the node's pid through the shared /proc. Two more lines
# per run: the napi threads' CPU inside the window (the viewers' receive work, not added to the
# node's), and datagrams dropped on the way (veth ring, qdisc, the load tool's UDP receive
# buffers) with the qdisc's requeues. Reports get the suffix -netns; the namespace and veth are
# removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNTS=${1:-"50 200 500"}
BITRATES=${2:-"600k 2M"}
OUT=${OUT:-bench-out}
DURATION=${DURATION:-20s}
INGEST=${INGEST:-whip}
PROTOCOL=${PROTOCOL:-whep}
NETNS=${NETNS:-}
NS=sfbench

host=127.0.0.1
topo=""
inns=()
node="" lt="" perf=""
sysctl_restore=()
cleanup() {
  local p
  for p in $lt $perf $node; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  [ -n "$NETNS" ] && NS=$NS scripts/bench-netns.sh down
  [ ${#sysctl_restore[@]} -gt 0 ] && sysctl -q -w "${sysctl_restore[@]}"
  return 0
}
if [ -n "$NETNS" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bench-fanout: NETNS=1 needs root (it creates namespace $NS and a veth pair); run as root or without NETNS" >&2
    exit 1
  fi
  host=10.200.0.1
  topo=-netns
  inns=(ip netns exec "$NS")
fi
trap cleanup EXIT
trap 'exit 130' INT TERM
[ -n "$NETNS" ] && NS=$NS HOST_IP=$host scripts/bench-netns.sh up

# napi_ticks: CPU time (user+system clock ticks) of the veth pair's NAPI kthreads.
napi_ticks() {
  local t=0 f
  for f in /proc/[0-9]*/comm; do
    case "$(cat "$f" 2>/dev/null)" in
      napi/sfb0-*|napi/sfb1-*) t=$(( t + $(awk '{sub(/.*\) /, ""); print $12 + $13}' "${f%comm}stat") )) ;;
    esac
  done
  echo "$t"
}

# drops: datagrams dropped towards the namespace (veth ring or host-side qdisc full) and from it,
# dropped by UDP sockets in the namespace (receive buffer full), and the host-side qdisc's
# requeues (the ring was full and the queue was stopped: backpressure on the node).
drops() {
  local a b c q
  a=$(cat /sys/class/net/sfb0/statistics/tx_dropped)
  b=$(ip netns exec "$NS" cat /sys/class/net/sfb1/statistics/tx_dropped)
  c=$(ip netns exec "$NS" awk '$1 == "Udp:" && $2 ~ /^[0-9]+$/ {print $6}' /proc/net/snmp)
  q=$(tc -s qdisc show dev sfb0 | awk '/dropped/ {gsub(/[,)]/, ""); print $7, $11; exit}')
  echo "$a $b $c ${q:-0 0}"
}

node_args=()
if [ -n "${PACKET_SEND:-}" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bench-fanout: PACKET_SEND needs root (CAP_NET_RAW for the node's AF_PACKET rings)" >&2
    exit 1
  fi
  node_args=(--packet-send)
  topo="$topo-packet"
  if [ -z "$NETNS" ]; then
    for k in accept_local route_localnet; do
      sysctl_restore+=("net.ipv4.conf.lo.$k=$(sysctl -n net.ipv4.conf.lo.$k)")
      sysctl -q -w "net.ipv4.conf.lo.$k=1"
    done
  fi
fi
pin_node=() pin_lt=()
if [ -n "${PIN:-}" ]; then
  pin_node=(taskset -c 0) pin_lt=(taskset -c 1)
  topo="$topo-pinned"
fi
mkdir -p "$OUT"
if [ -z "${BIN:-}" ]; then
  go build -o bin/streamfleet ./cmd/streamfleet
  BIN=./bin/streamfleet
fi
latency=()
[ -n "${SRT_LATENCY:-}" ] && latency=(--srt-latency "$SRT_LATENCY")
# Without PACING the load tool's default applies; the tag names the factor either way, read from
# the load tool's help when it is the default.
pacing=()
if [ -n "${PACING:-}" ]; then
  pacing=(--pacing "$PACING")
else
  PACING=$("$BIN" loadtest -h 2>&1 | awk '/^  -pacing/ { f = 1 } f && /\(default / { sub(/.*\(default /, ""); sub(/\).*/, ""); print; exit }')
  PACING=${PACING:-default}
fi
for br in $BITRATES; do
  for n in $COUNTS; do
    tag="$INGEST-$PROTOCOL-$br-$n-pacing$PACING$topo"
    "${pin_node[@]}" "$BIN" node --http $host:18080 --ice-udp $host:18189 --log-level warn \
      --srt $host:19000 --rtsp $host:18554 --rtsp-udp-rtp $host:18000 --rtsp-udp-rtcp $host:18001 \
      "${latency[@]}" "${node_args[@]}" ${PPROF:+--pprof} 2>"$OUT/node-$tag.log" &
    node=$!
    sleep 1
    ramp=$(( n / 10 > 20 ? n / 10 : 20 ))
    : >"$OUT/loadtest-$tag.log"
    "${inns[@]}" "${pin_lt[@]}" "$BIN" loadtest --server http://$host:18080 --srt $host:19000 --rtsp $host:18554 \
      --ingest "$INGEST" --protocol "$PROTOCOL" "${latency[@]}" "${pacing[@]}" --subscribers "$n" --ramp "$ramp" \
      --warmup 3s --duration "$DURATION" --bitrate "$br" --pid "$node" --node-metrics http://$host:18080/metrics \
      --json "$OUT/fanout-$tag.json" >"$OUT/fanout-$tag.txt" 2>"$OUT/loadtest-$tag.log" &
    lt=$!
    # The window: from the load tool's "measuring" line to its exit.
    until grep -q measuring "$OUT/loadtest-$tag.log" || ! kill -0 "$lt" 2>/dev/null; do sleep 0.1; done
    [ -n "$NETNS" ] && t0=$(napi_ticks) s0=$(date +%s.%N) d0=$(drops)
    perf=""
    if [ -n "${PERF:-}" ]; then
      perf record -q -e cpu-clock -g -p "$node" -o "$OUT/perf-$tag.data" 2>"$OUT/perf-$tag.log" &
      perf=$!
    fi
    wait "$lt" || true
    lt=""
    if [ -n "$perf" ]; then
      kill -INT "$perf"; wait "$perf" || true
      perf=""
    fi
    if [ -n "$NETNS" ]; then
      t1=$(napi_ticks) s1=$(date +%s.%N)
      awk -v t="$(( t1 - t0 ))" -v s="$s0" -v e="$s1" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%-19sCPU %.2f cores (%.2f s), veth receive in napi/sfb0-*, napi/sfb1-*\n", "napi threads", t / hz / (e - s), t / hz }' \
        >>"$OUT/fanout-$tag.txt"
      read -r a0 b0 c0 q0 r0 <<<"$d0"
      read -r a1 b1 c1 q1 r1 <<<"$(drops)"
      printf '%-19s%d to the namespace (veth ring %d, qdisc %d), %d from it; %d in its UDP receive buffers; %d requeues\n' \
        "netns drops" $(( a1 - a0 + q1 - q0 )) $(( a1 - a0 )) $(( q1 - q0 )) $(( b1 - b0 )) $(( c1 - c0 )) $(( r1 - r0 )) \
        >>"$OUT/fanout-$tag.txt"
    fi
    kill "$node"; wait "$node" 2>/dev/null || true
    node=""
    grep -E "subscribers|delay  |delay to socket|  video|  audio|node fan-out|pacer|time to 1st|packets|server pid|load tool|napi threads|netns drops" "$OUT/fanout-$tag.txt" | sed "s/^/[$tag] /"
  done
done
