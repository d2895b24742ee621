#!/usr/bin/env bash
# Fan-out benchmark: starts one node on loopback and runs the load tool against it for each
# bitrate and subscriber count, writing one JSON report per run to $OUT (default bench-out/).
# Usage: scripts/bench-fanout.sh [counts] [bitrates]   e.g. scripts/bench-fanout.sh "50 200 500" "600k 2M"
set -euo pipefail
cd "$(dirname "$0")/.."
COUNTS=${1:-"50 200 500"}
BITRATES=${2:-"600k 2M"}
OUT=${OUT:-bench-out}
DURATION=${DURATION:-20s}
mkdir -p "$OUT"
go build -o bin/streamfleet ./cmd/streamfleet
for br in $BITRATES; do
  for n in $COUNTS; do
    ./bin/streamfleet node --http 127.0.0.1:18080 --ice-udp 127.0.0.1:18189 --log-level warn \
      ${PPROF:+--pprof} 2>"$OUT/node-$br-$n.log" &
    node=$!
    sleep 1
    ramp=$(( n / 10 > 20 ? n / 10 : 20 ))
    ./bin/streamfleet loadtest --server http://127.0.0.1:18080 --subscribers "$n" --ramp "$ramp" \
      --warmup 3s --duration "$DURATION" --bitrate "$br" --pid "$node" \
      --json "$OUT/fanout-$br-$n.json" >"$OUT/fanout-$br-$n.txt" 2>"$OUT/loadtest-$br-$n.log" || true
    kill "$node"; wait "$node" 2>/dev/null || true
    grep -E "subscribers|delay  |time to 1st|packets|server pid|load tool" "$OUT/fanout-$br-$n.txt" | sed "s/^/[$br x $n] /"
  done
done
