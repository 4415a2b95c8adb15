#!/bin/sh
# Renders a drill report in Debian's headless Chromium and writes a PNG next to it (or to $2).
# usage: bench/lab/screenshot.sh REPORT.html [OUT.png]
# Needs: apt-get install -y chromium. The PNG is not for git (bench/lab/.gitignore).
set -eu
report=$(realpath "$1")
out=${2:-${report%.html}.png}
out=$(realpath -m "$out")
profile=$(mktemp -d /tmp/haplane-chromium.XXXXXX)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --window-size=1200,${HEIGHT:-2600} \
  --screenshot="$out" "file://$report" 2>/dev/null
echo "$out"
