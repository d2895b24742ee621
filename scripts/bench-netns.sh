#!/usr/bin/env bash
# Network namespace for scripts/bench-fanout.sh NETNS=1: a namespace and a veth pair between it and
# the host, set up so that a datagram crossing the veth is received by a NAPI kernel thread of the
# receiving end instead of inside the sender's system call (as on loopback, where the receiver's
# UDP receive path runs in softirq on the sender's stack and is charged to the sender).
#
# Usage: scripts/bench-netns.sh up|down|status
# Environment: NS (default sfbench), HOST_DEV (sfb0), NS_DEV (sfb1), HOST_IP (10.200.0.1),
# NS_IP (10.200.0.2), GRO_FLUSH_NS (50000) and DEFER_IRQS (2) (see below). Needs root; up
# needs ethtool and tc.
#
# How: a veth end with GRO (or XDP) enabled has its own NAPI context, a ring that the peer's
# veth_xmit fills, and with threaded NAPI (/sys/class/net/DEV/threaded = 1) a "napi/DEV-N"
# kthread polls it, so the sender pays only for its own UDP/IP output and the hand-off to the
# ring. GRO alone is not enough: veth_xmit uses the ring only for skbs it deems worth
# aggregating (veth_skb_is_eligible_for_gro), and while the sending end has TSO on, a plain UDP
# datagram is not one of them (unless the receiver has rx-udp-gro-forwarding on, which would
# make GRO merge and the socket re-split the datagrams); it then goes through netif_rx and the
# per-CPU backlog, and the whole receive runs in softirq on the sender's stack, as on loopback.
# So TSO is turned off on both ends (UDP never uses TSO; it only changes how the signalling's
# TCP segments cross the pair).
set -euo pipefail
NS=${NS:-sfbench}
HOST_DEV=${HOST_DEV:-sfb0}
NS_DEV=${NS_DEV:-sfb1}
HOST_IP=${HOST_IP:-10.200.0.1}
NS_IP=${NS_IP:-10.200.0.2}
GRO_FLUSH_NS=${GRO_FLUSH_NS:-50000}
DEFER_IRQS=${DEFER_IRQS:-2}

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "bench-netns: must run as root (creates namespace $NS and veth $HOST_DEV/$NS_DEV)" >&2
    exit 1
  fi
}

# in_ns CMD...: run CMD inside the namespace; in_dev_ns DEV CMD...: where DEV is.
in_ns() { ip netns exec "$NS" "$@"; }
in_dev_ns() {
  if [ "$1" = "$HOST_DEV" ]; then shift; "$@"; else shift; in_ns "$@"; fi
}

up() {
  need_root
  if ! command -v ethtool >/dev/null || ! command -v tc >/dev/null; then
    echo "bench-netns: ethtool or tc is missing (apt-get update && apt-get install -y ethtool iproute2)" >&2
    exit 1
  fi
  if ip netns list | grep -qw "$NS" || ip link show "$HOST_DEV" >/dev/null 2>&1; then
    echo "bench-netns: namespace $NS or device $HOST_DEV already exists (scripts/bench-netns.sh down)" >&2
    exit 1
  fi
  ip netns add "$NS"
  ip link add "$HOST_DEV" type veth peer name "$NS_DEV"
  ip link set "$NS_DEV" netns "$NS"
  ip addr add "$HOST_IP/24" dev "$HOST_DEV"
  in_ns ip addr add "$NS_IP/24" dev "$NS_DEV"
  ip link set "$HOST_DEV" up
  in_ns ip link set "$NS_DEV" up
  in_ns ip link set lo up
  # GRO first: it creates the veth's NAPI contexts, which threaded then moves to kthreads.
  ethtool -K "$HOST_DEV" gro on tso off
  in_ns ethtool -K "$NS_DEV" gro on tso off
  # A queue in front of each end's ring, as a NIC has: veth stops the queue while the peer's
  # 256-entry ring is full and holds the datagrams there, where without one (veth's default,
  # noqueue) it drops them. The socket's send buffer then limits what is queued, so the sender
  # waits, as on a NIC, instead of losing bursts (a fan-out round is hundreds of datagrams).
  tc qdisc replace dev "$HOST_DEV" root pfifo_fast
  in_ns tc qdisc replace dev "$NS_DEV" root pfifo_fast
  # Interrupt coalescing, as a NIC does it: while datagrams keep coming, the NAPI context stays
  # armed on a timer (polled every GRO_FLUSH_NS) instead of being rescheduled by the sender, so
  # the sender does not wake the napi thread (a wake-up and often a context switch) on nearly
  # every batch. After DEFER_IRQS empty polls it goes back to being woken by the sender.
  for d in "$HOST_DEV" "$NS_DEV"; do
    in_dev_ns "$d" sh -c "echo $GRO_FLUSH_NS > /sys/class/net/$d/gro_flush_timeout; echo $DEFER_IRQS > /sys/class/net/$d/napi_defer_hard_irqs; echo 1 > /sys/class/net/$d/threaded"
  done
  status
}

down() {
  need_root
  # Deleting the namespace destroys its veth end, and with it the pair.
  ip netns del "$NS" 2>/dev/null || true
  ip link del "$HOST_DEV" 2>/dev/null || true
}

status() {
  echo "bench-netns: $HOST_DEV $HOST_IP (host) <-> $NS_DEV $NS_IP (netns $NS)"
  local d
  for d in "$HOST_DEV" "$NS_DEV"; do
    echo "  $d: $(in_dev_ns "$d" ethtool -k "$d" | grep -E '^(generic-receive-offload|tcp-segmentation-offload)' | tr '\n' ' ')" \
      "threaded $(in_dev_ns "$d" cat "/sys/class/net/$d/threaded")," \
      "gro_flush_timeout $(in_dev_ns "$d" cat "/sys/class/net/$d/gro_flush_timeout")," \
      "napi_defer_hard_irqs $(in_dev_ns "$d" cat "/sys/class/net/$d/napi_defer_hard_irqs")," \
      "qdisc $(in_dev_ns "$d" tc qdisc show dev "$d" | awk 'NR == 1 {print $2}')"
  done
  echo "  napi threads: $(ps -eo pid=,comm= | awk -v h="$HOST_DEV" -v n="$NS_DEV" '$2 ~ "^napi/(" h "|" n ")-" {printf "%s(%s) ", $2, $1}')"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
