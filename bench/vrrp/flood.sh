#!/usr/bin/env bash
# CPU of the haplane daemon while a hostile peer floods forged auth_hmac adverts at
# 10 000 packets/s (wrong key, fresh timestamps: each costs the receivers one HMAC-SHA256).
# Runs the namespace test `a_hostile_peer_never_moves_the_vip` of
# crates/haplane/tests/vrrp_auth_hmac.rs on a release build (HAPLANE_FLOOD_SECS long flood,
# default 30), which also asserts that the VIP never left m1 (10 ms samples) and prints, for
# the master m1 and the backup m2, (utime + stime from /proc/PID/stat over the flood) / flood
# time. Needs root, iproute2, nftables. Takes the measurement lock (see docs/vrrp.md).
# Usage: bench/vrrp/flood.sh [--debug]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
profile=--release
[ "${1:-}" = --debug ] && profile=
[ "$(id -u)" -eq 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }
cd "$root"
cargo test -q $profile -p haplane --test vrrp_auth_hmac --no-run
echo "kernel: $(uname -r); cores: $(nproc); profile: ${profile:---debug}"
HAPLANE_FLOOD_SECS=${HAPLANE_FLOOD_SECS:-30} flock -o /tmp/haplane-measure.lock \
  cargo test -q $profile -p haplane --test vrrp_auth_hmac -- --exact \
  a_hostile_peer_never_moves_the_vip --nocapture 2>&1 | grep -E '^flood:|test result|panicked|FAILED'
