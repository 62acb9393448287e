#!/bin/sh
# Web lure: new-connection HTTP requests per second with wrk (Connection: close), every request
# logged (events serialised to JSON in memory), against a bare tokio server that answers
# without parsing or logging, in the same run. Usage: bench/services/run.sh [seconds]
set -eu
secs=${1:-10}
cargo build --release -q -p apiary-pot --example bench_server
bin=${CARGO_TARGET_DIR:-target}/release/examples/bench_server
for mode in bare web; do
    fifo=$(mktemp -u); mkfifo "$fifo"
    "$bin" "$mode" > "$fifo" & pid=$!
    read -r port < "$fifo"; rm -f "$fifo"
    printf '%s: ' "$mode"
    wrk -t1 -c32 -d"${secs}s" -H 'Connection: close' "http://127.0.0.1:$port/robots.txt" \
        | awk '/Requests\/sec/ {print $2 " req/s"} /Non-2xx|Socket errors/ {print "  " $0}'
    kill "$pid"; wait "$pid" 2>/dev/null || true
done
