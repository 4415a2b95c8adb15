#!/usr/bin/env bash
# VRRP failover benchmark: the longest gap a client sees (connects to VIP:port every 10 ms)
# when the master's link goes down and when the master's daemon gets SIGTERM, for haplane and
# keepalived with the same settings, in the same run: v2 with 1 s adverts, v3 with 100 ms.
# Runs in private network namespaces (netlab, 192.0.2.0/24); needs root, iproute2, nftables
# and keepalived. Builds haplane (release) and the bench first.
# Usage: bench/vrrp/run.sh [--runs N] [--modes v2,v3] [--impls haplane,keepalived]
#                          [--port PORT] [--keep-logs]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}

[ "$(id -u)" -eq 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }
for t in ip nft keepalived; do
  command -v $t >/dev/null || { echo "missing $t (apt-get install -y iproute2 nftables keepalived)" >&2; exit 1; }
done

(cd "$root" && cargo build -q --release -p haplane)
cargo build -q --release --manifest-path "$here/Cargo.toml"
echo "keepalived: $(keepalived --version 2>&1 | head -1)"
echo "kernel: $(uname -r); cores: $(nproc)"
exec "$CARGO_TARGET_DIR/release/vrrp-bench" --haplane "$CARGO_TARGET_DIR/release/haplane" "$@"
