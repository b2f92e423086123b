#!/usr/bin/env bash
# `emoflow query` as a cluster of PROCESSES processes of WORKERS workers each on this machine
# (loopback), over FILE; process 0's document goes to standard output, the others' summaries
# to standard error. It exits once every process has.
#
#   benches/cluster_query.sh PROCESSES WORKERS FILE [more query flags...]
#   EMOFLOW_BIN=target/release/emoflow (the default) names the binary.
#
# With LO_BYTES=1 it also prints, on standard error, the bytes sent over the loopback interface
# during the run (the processes' exchange, when nothing else uses loopback meanwhile).
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 PROCESSES WORKERS FILE [query flags...]" >&2
  exit 2
fi
n=$1 w=$2 file=$3
shift 3
bin=${EMOFLOW_BIN:-target/release/emoflow}
hosts=$(mktemp)
trap 'rm -f "$hosts"' EXIT
# Ports nothing listens on (a connection to them is refused), picked in bash: a Python helper
# would add its own start-up (over 0.1 s) to the time measured.
port=$((20000 + RANDOM % 40000))
for _ in $(seq "$n"); do
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    port=$((port + 1))
  done
  echo "127.0.0.1:$port"
  port=$((port + 1))
done > "$hosts"
lo=/sys/class/net/lo/statistics/tx_bytes
before=$(cat "$lo" 2>/dev/null || echo 0)
pids=()
for i in $(seq 1 $((n - 1))); do
  "$bin" query --input "$file" --workers "$w" --processes "$n" --process "$i" \
    --hostfile "$hosts" "$@" > /dev/null &
  pids+=("$!")
done
"$bin" query --input "$file" --workers "$w" --processes "$n" --process 0 --hostfile "$hosts" "$@"
for p in "${pids[@]}"; do
  wait "$p"
done
if [ "${LO_BYTES:-0}" = 1 ]; then
  echo "loopback bytes sent during the run: $(( $(cat "$lo") - before ))" >&2
fi
