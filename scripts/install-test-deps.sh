#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine: headless Chromium for the
# end-to-end browser tests, ffmpeg/ffprobe (SRT, RTSP and the transcoder), srt-tools
# (srt-live-transmit), and ip, tc, ethtool and unshare (iproute2, ethtool, util-linux) for the
# tests that run in network namespaces of their own (a send buffer filled behind a slow qdisc, the
# packet path over a veth with checksums done in software). Idempotent; needs root (or sudo) and
# Debian's package mirror.
set -euo pipefail

need=()
command -v chromium >/dev/null 2>&1 || [ -x /usr/lib/chromium/chromium ] || need+=(chromium)
command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || need+=(ffmpeg)
command -v srt-live-transmit >/dev/null 2>&1 || need+=(srt-tools)
command -v ip >/dev/null 2>&1 && command -v tc >/dev/null 2>&1 || need+=(iproute2)
command -v ethtool >/dev/null 2>&1 || [ -x /usr/sbin/ethtool ] || need+=(ethtool)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)

if [ ${#need[@]} -eq 0 ]; then
  echo "test dependencies present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
echo "installing: ${need[*]}"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
