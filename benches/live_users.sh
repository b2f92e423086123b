#!/usr/bin/env bash
# The live service at a million users: starts `emoflow serve` on the embedded broker, then runs
# `emoflow bench-freshness` against it (defaults: 1,000,000 users at 20,000 events/s for 300 s,
# probing /sessions, /sessions/{user}, /stats and /top, with the service's memory sampled every
# second), and stops the service. Arguments replace the defaults:
#   benches/live_users.sh [--users N] [--rate R] [--seconds S] [--probe ROUTES]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-target/release/emoflow}
[ -x "$bin" ] || cargo build --release
dir=$(mktemp -d)
port=${PORT:-18098}
"$bin" serve --listen "127.0.0.1:$port" --data-dir "$dir" --no-archive >"$dir/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do
  grep -q 'serving http' "$dir/serve.log" && break
  sleep 0.1
done
brokers=$(grep -o 'broker at [0-9.:]*' "$dir/serve.log" | cut -d' ' -f3)
[ -n "$brokers" ] || { cat "$dir/serve.log"; exit 1; }
defaults=(--users 1000000 --rate 20000 --seconds 300
  --probe /sessions,/sessions/user-1,/stats,/top)
[ $# -gt 0 ] && defaults=()
"$bin" bench-freshness --url "http://127.0.0.1:$port" --brokers "$brokers" --serve-pid "$pid" \
  "${defaults[@]}" "$@"
