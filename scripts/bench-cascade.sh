#!/usr/bin/env bash
# Cascade benchmark: one WHIP publisher on an origin, N WHEP subscribers on the last node of a chain
# of HOPS nodes (1: the origin itself; 2: origin → edge; 3: origin → relay → edge), all on loopback.
# Writes one JSON report per run to $OUT and prints the delay lines and each node's upstream pulls.
# Usage: scripts/bench-cascade.sh [subscribers] [hops...]   e.g. scripts/bench-cascade.sh 200 1 2 3
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200}
shift || true
HOPS=${*:-"1 2 3"}
OUT=${OUT:-bench-out}
DURATION=${DURATION:-20s}
BITRATE=${BITRATE:-2M}
mkdir -p "$OUT"
go build -o bin/streamfleet ./cmd/streamfleet
start_node() { # id role http-port ice-port rtsp-port srt-port [upstream]
  local up=()
  [ -n "${7:-}" ] && up=(--upstream "$7")
  ./bin/streamfleet node --id "$1" --role "$2" --http "127.0.0.1:$3" --ice-udp "127.0.0.1:$4" \
    --rtsp "127.0.0.1:$5" --rtsp-udp-rtp= --rtsp-udp-rtcp= --srt "127.0.0.1:$6" --log-level warn \
    --cluster-secret bench-secret-0123456789 "${up[@]}" >"$OUT/node-$1.out" 2>"$OUT/node-$1.log" &
  echo $!
}
for hops in $HOPS; do
  pids=()
  pids+=("$(start_node origin origin 41080 41189 41554 41900)")
  last=41080
  if [ "$hops" -ge 3 ]; then
    pids+=("$(start_node relay relay 42080 42189 42554 42900 127.0.0.1:41554)")
    pids+=("$(start_node edge edge 43080 43189 43554 43900 127.0.0.1:42554)"); last=43080
  elif [ "$hops" -eq 2 ]; then
    pids+=("$(start_node edge edge 43080 43189 43554 43900 127.0.0.1:41554)"); last=43080
  fi
  sleep 1
  pidlist=$(IFS=,; echo "${pids[*]}")
  ramp=$(( N / 10 > 20 ? N / 10 : 20 ))
  ./bin/streamfleet loadtest --publish-server http://127.0.0.1:41080 --server "http://127.0.0.1:$last" \
    --subscribers "$N" --ramp "$ramp" --warmup 3s --duration "$DURATION" --bitrate "$BITRATE" --pid "$pidlist" \
    --json "$OUT/cascade-$hops-$N.json" >"$OUT/cascade-$hops-$N.txt" 2>"$OUT/loadtest-cascade-$hops-$N.log" &
  lt=$!
  # Inside the measurement window (after the ramp and the warm-up): the pulls under way per node.
  sleep $(( N / ramp + 8 ))
  for port in 41080 42080 43080; do
    curl -s "http://127.0.0.1:$port/metrics" 2>/dev/null | grep -E '^streamfleet_upstream_pulls(\{| )|^streamfleet_whep_sessions' | sed "s/^/[$hops hops] :$port /" || true
  done
  wait "$lt" || true
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  grep -E "subscribers|delay  |  video|  audio|packets|server pid|server total|load tool" "$OUT/cascade-$hops-$N.txt" | sed "s/^/[$hops hops] /" || true
done
