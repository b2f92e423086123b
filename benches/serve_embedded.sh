# Sourced by the live benchmarks: starts `emoflow serve` (BIN, or the release build, built when
# absent) on the embedded broker on loopback port PORT (default: the caller's default_port),
# waits until it serves, and sets `bin`, `dir`, `port`, `pid` (stopped and cleaned up on exit)
# and `brokers` (the embedded broker's address).
bin=${BIN:-target/release/emoflow}
[ -x "$bin" ] || cargo build --release
dir=$(mktemp -d)
port=${PORT:-$default_port}
"$bin" serve --listen "127.0.0.1:$port" --data-dir "$dir" --no-archive >"$dir/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do
  grep -q 'serving http' "$dir/serve.log" && break
  sleep 0.1
done
brokers=$(grep -o 'broker at [0-9.:]*' "$dir/serve.log" | cut -d' ' -f3)
[ -n "$brokers" ] || { cat "$dir/serve.log"; exit 1; }
