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
# Free ports, from the kernel.
python3 - "$n" > "$hosts" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print("\n".join(f"127.0.0.1:{s.getsockname()[1]}" for s in socks))
PY
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
