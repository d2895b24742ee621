#!/usr/bin/env bash
# The kernel's per-datagram floor under the node's fan-out (BenchmarkSendBatchKernelFloor in
# node/webrtcserver): the node's sendBatch alone, to loopback sockets (their receive path runs
# inside the sender's system call, as in scripts/bench-fanout.sh) and, as root, to a device that
# drops what it is given, in a network namespace of its own (sffloor: lo and an ifb device,
# ifb0 10.201.0.1/24, no ARP, its default qdisc; an ifb frees every packet not redirected to it
# by tc, so datagrams to 10.201.0.2 are dropped by the device and the send path is measured
# alone, as with a NIC that takes them away; this kernel has no dummy device). Nothing leaves the
# namespace; it is removed on exit.
# The packet path (--packet-send) is measured there too: the same datagrams through a packet ring
# (video-1200B-dropping-device-packet-ring).
# Usage: scripts/bench-floor.sh [benchtime]   (default 100000x; prints go test's benchmark lines)
set -euo pipefail
cd "$(dirname "$0")/.."
BENCHTIME=${1:-100000x}
NS=sffloor
run=(go test -run '^$' -bench BenchmarkSendBatchKernelFloor -benchtime "$BENCHTIME" -count 2 ./node/webrtcserver)
if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null; then
  echo "bench-floor: not root or no ip(8): loopback cases only" >&2
  exec "${run[@]}"
fi
go test -c -o bin/webrtcserver.test ./node/webrtcserver
cleanup() { ip netns del "$NS" 2>/dev/null || true; }
trap cleanup EXIT
cleanup
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" link add ifb0 type ifb
ip -n "$NS" addr add 10.201.0.1/24 dev ifb0
ip -n "$NS" link set ifb0 up
ip -n "$NS" neigh add 10.201.0.2 lladdr 02:00:00:00:00:02 dev ifb0 nud permanent # the packet ring's next hop
ip netns exec "$NS" env SF_FLOOR_DROP=10.201.0.2 bin/webrtcserver.test -test.run '^$' \
  -test.bench BenchmarkSendBatchKernelFloor -test.benchtime "$BENCHTIME" -test.count 2
