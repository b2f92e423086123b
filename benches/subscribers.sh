#!/usr/bin/env bash
# Live push under load: starts `emoflow serve` on the embedded broker, then runs
# `emoflow bench-subscribers` against it with the arguments given (defaults: the issue's scale,
# 10,000 subscribers over 1,000 filters at 20,000 events/s for 20 s), and stops the service.
#   benches/subscribers.sh [--subscribers N] [--filters M] [--rate R] [--seconds S]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/emoflow
[ -x "$bin" ] || cargo build --release
dir=$(mktemp -d)
port=${PORT:-18099}
"$bin" serve --listen "127.0.0.1:$port" --data-dir "$dir" --no-archive >"$dir/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do
  grep -q 'serving http' "$dir/serve.log" && break
  sleep 0.1
done
brokers=$(grep -o 'broker at [0-9.:]*' "$dir/serve.log" | cut -d' ' -f3)
[ -n "$brokers" ] || { cat "$dir/serve.log"; exit 1; }
defaults=(--subscribers 10000 --filters 1000 --rate 20000 --seconds 20)
[ $# -gt 0 ] && defaults=()
"$bin" bench-subscribers --url "http://127.0.0.1:$port" --brokers "$brokers" --serve-pid "$pid" "${defaults[@]}" "$@"
