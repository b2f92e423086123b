#!/usr/bin/env bash
# Live push under load: starts `emoflow serve` on the embedded broker, then runs
# `emoflow bench-subscribers` against it with the arguments given (defaults: the issue's scale,
# 10,000 subscribers over 1,000 filters at 20,000 events/s for 20 s), and stops the service.
#   benches/subscribers.sh [--subscribers N] [--filters M] [--rate R] [--seconds S]
set -euo pipefail
cd "$(dirname "$0")/.."
default_port=18099
. benches/serve_embedded.sh
defaults=(--subscribers 10000 --filters 1000 --rate 20000 --seconds 20)
[ $# -gt 0 ] && defaults=()
"$bin" bench-subscribers --url "http://127.0.0.1:$port" --brokers "$brokers" --serve-pid "$pid" "${defaults[@]}" "$@"
