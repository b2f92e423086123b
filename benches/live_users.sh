#!/usr/bin/env bash
# The live service at a million users: starts `emoflow serve` on the embedded broker, then runs
# `emoflow bench-freshness` against it (defaults: 1,000,000 users at 20,000 events/s for 300 s,
# probing /sessions, /sessions/{user}, /stats and /top, with the service's memory sampled every
# second), and stops the service. Arguments replace the defaults:
#   benches/live_users.sh [--users N] [--rate R] [--seconds S] [--probe ROUTES]
set -euo pipefail
cd "$(dirname "$0")/.."
default_port=18098
. benches/serve_embedded.sh
defaults=(--users 1000000 --rate 20000 --seconds 300
  --probe /sessions,/sessions/user-1,/stats,/top)
[ $# -gt 0 ] && defaults=()
"$bin" bench-freshness --url "http://127.0.0.1:$port" --brokers "$brokers" --serve-pid "$pid" \
  "${defaults[@]}" "$@"
