#!/usr/bin/env bash
# Fan-out benchmark: starts one node on loopback and runs the load tool against it for each
# bitrate and subscriber count, writing one JSON report per run to $OUT (default bench-out/).
# Usage: scripts/bench-fanout.sh [counts] [bitrates]   e.g. scripts/bench-fanout.sh "50 200 500" "600k 2M"
# Environment: INGEST (whip|srt), PROTOCOL (whep|srt|rtsp), SRT_LATENCY (e.g. 20ms, for node and
# load tool), DURATION (measurement window), OUT, PPROF (set: serve the node's profiler).
set -euo pipefail
cd "$(dirname "$0")/.."
COUNTS=${1:-"50 200 500"}
BITRATES=${2:-"600k 2M"}
OUT=${OUT:-bench-out}
DURATION=${DURATION:-20s}
INGEST=${INGEST:-whip}
PROTOCOL=${PROTOCOL:-whep}
mkdir -p "$OUT"
go build -o bin/streamfleet ./cmd/streamfleet
latency=()
[ -n "${SRT_LATENCY:-}" ] && latency=(--srt-latency "$SRT_LATENCY")
for br in $BITRATES; do
  for n in $COUNTS; do
    tag="$INGEST-$PROTOCOL-$br-$n"
    ./bin/streamfleet node --http 127.0.0.1:18080 --ice-udp 127.0.0.1:18189 --log-level warn \
      --srt 127.0.0.1:19000 --rtsp 127.0.0.1:18554 --rtsp-udp-rtp 127.0.0.1:18000 --rtsp-udp-rtcp 127.0.0.1:18001 \
      "${latency[@]}" ${PPROF:+--pprof} 2>"$OUT/node-$tag.log" &
    node=$!
    sleep 1
    ramp=$(( n / 10 > 20 ? n / 10 : 20 ))
    ./bin/streamfleet loadtest --server http://127.0.0.1:18080 --srt 127.0.0.1:19000 --rtsp 127.0.0.1:18554 \
      --ingest "$INGEST" --protocol "$PROTOCOL" "${latency[@]}" --subscribers "$n" --ramp "$ramp" \
      --warmup 3s --duration "$DURATION" --bitrate "$br" --pid "$node" \
      --json "$OUT/fanout-$tag.json" >"$OUT/fanout-$tag.txt" 2>"$OUT/loadtest-$tag.log" || true
    kill "$node"; wait "$node" 2>/dev/null || true
    grep -E "subscribers|delay  |  video|  audio|time to 1st|packets|server pid|load tool" "$OUT/fanout-$tag.txt" | sed "s/^/[$tag] /"
  done
done
