#!/bin/sh
# Service benchmarks, each against its anchor in the same run. Usage:
#   bench/services/run.sh [seconds] [web] [hashcount] [dns] [dns-e2e]  (default: the first three)
#
# web:       new-connection HTTP requests per second with wrk (Connection: close), every
#            request logged (events serialised to JSON in memory), against a bare tokio server
#            that answers without parsing or logging and against OpenCanary's HTTP module
#            (pip-installed into a venv under target/, never in CI; skipped with a note when
#            it cannot be installed).
# hashcount: HashCountRandom connections per second (connect, greeting, one chunk, its
#            answer, close), the native service against the Lua plugin plugins/hashcount.lua.
# dns:       answered DNS queries per second over UDP with dnsperf, apiary's dns service
#            (every query logged) against a bare tokio UDP responder that sends each
#            datagram back with the response bit set.
# dns-e2e:   the same queries against the whole product: `apiary pot run` serving dns with the
#            JSONL logger writing every event to a file on tmpfs (/dev/shm); prints how many
#            dns.query events the file holds afterwards (completed queries plus one probe).
set -eu
secs=${1:-10}
[ $# -gt 0 ] && shift
what=${*:-web hashcount dns}
target=${CARGO_TARGET_DIR:-target}
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -q -p apiary-pot --example bench_server --example bench_conn
case " $what " in *" dns-e2e "*) [ -n "${SKIP_BUILD:-}" ] || cargo build --release -q -p apiary ;; esac
bin=$target/release/examples/bench_server
conn=$target/release/examples/bench_conn
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# start MODE: runs bench_server MODE in the background; sets $pid and $port.
start() {
    fifo=$out/port; rm -f "$fifo"; mkfifo "$fifo"
    "$bin" "$1" > "$fifo" & pid=$!
    read -r port < "$fifo"
}
stop() { kill "$1"; wait "$1" 2>/dev/null || true; }

# wrk_run PORT [PATH]: the path is one the server logs (OpenCanary logs only its login page).
wrk_run() {
    wrk -t1 -c32 -d"${secs}s" -H 'Connection: close' "http://127.0.0.1:$1${2:-/robots.txt}" \
        | awk '/Requests\/sec/ {print $2 " req/s"} /Non-2xx|Socket errors/ {print "  " $0}'
}

opencanary() {
    venv=$(cd "$target" && pwd)/bench-venv/opencanary
    if [ ! -x "$venv/bin/twistd" ]; then
        python3 -m venv "$venv" && "$venv/bin/pip" install -q opencanary \
            || { echo "opencanary: not installed (pip failed)"; return; }
    fi
    ocport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    # Only the HTTP module, logging every request to a file like its default config does.
    "$venv/bin/python" - "$out/opencanary.conf" "$ocport" "$out/opencanary.log" <<'EOF'
import json, sys, importlib.resources as r
conf = json.loads((r.files("opencanary") / "data" / "settings.json").read_text())
for k in list(conf):
    if k.endswith(".enabled"):
        conf[k] = False
conf["http.enabled"] = True
conf["http.port"] = int(sys.argv[2])
conf["device.listen_addr"] = "127.0.0.1"
conf["logger"] = {"class": "PyLogger", "kwargs": {
    "formatters": {"plain": {"format": "%(message)s"}},
    "handlers": {"file": {"class": "logging.FileHandler", "filename": sys.argv[3]}}}}
open(sys.argv[1], "w").write(json.dumps(conf))
EOF
    # What `opencanaryd --dev` runs, without its sudo wrapper: twistd in the foreground,
    # reading ./opencanary.conf.
    (cd "$out" && exec "$venv/bin/twistd" -noy "$venv/bin/opencanary.tac" \
        --pidfile "$out/opencanary.pid" > "$out/opencanaryd.out" 2>&1) & ocpid=$!
    for _ in $(seq 50); do
        curl -s -o /dev/null "http://127.0.0.1:$ocport/" && break
        sleep 0.2
    done
    printf 'opencanary: '
    wrk_run "$ocport" /index.html
    stop "$ocpid"
    echo "  opencanary logged $(grep -c '"logtype": 3000' "$out/opencanary.log" || true) http.GET events"
}

# dnsperf_run PORT: answered queries per second over UDP.
dnsperf_run() {
    dnsperf -s 127.0.0.1 -p "$1" -d "$out/queries" -l "$secs" -c 4 -q 200 \
        | awk '/Queries completed/ {c=$3 " " $4} /Queries per second/ {q=$4}
               END {print q " answered queries/s, completed " c}'
}

# dns_e2e: apiary pot run with the dns service and a JSONL logger on tmpfs.
dns_e2e() {
    shm=$(mktemp -d /dev/shm/apiary-dns-bench.XXXXXX)
    dport=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    printf '%s\n' 'node = "bench"' "data_dir = \"$shm/data\"" '[pot]' 'bind = ["127.0.0.1"]' \
        '[pot.limits]' 'udp_replies_per_sec = 1e9' 'udp_replies_burst = 1e9' \
        '[[service]]' 'name = "DNS"' 'plugin = "dns"' "ports = [\"udp:$dport\"]" \
        '[[logger]]' 'type = "jsonl"' 'path = "events.jsonl"' 'max_bytes = 100000000000' \
        > "$shm/apiary.toml"
    "$target/release/apiary" pot run -c "$shm/apiary.toml" > "$shm/run.log" 2>&1 & apid=$!
    for _ in $(seq 50); do
        dig +short +tries=1 +time=1 -p "$dport" @127.0.0.1 ready.example > /dev/null 2>&1 && break
        sleep 0.2
    done
    printf 'apiary pot run (jsonl on tmpfs): '
    dnsperf_run "$dport"
    kill -INT "$apid"; wait "$apid" 2>/dev/null || true
    echo "  dns.query events in the file: $(grep -c '"dns.query"' "$shm/data/events.jsonl")"
    rm -rf "$shm"
}

for w in $what; do
    case $w in
    web)
        for mode in bare web; do
            start "$mode"
            printf '%s: ' "$mode"
            wrk_run "$port"
            stop "$pid"
        done
        opencanary
        ;;
    hashcount)
        for mode in hashcount plugins/hashcount.lua; do
            start "$mode"
            printf '%s: ' "$mode"
            "$conn" "127.0.0.1:$port" "$secs" 32
            stop "$pid"
        done
        ;;
    dns | dns-e2e)
        # A mix of names and types; ANY gets the one-record RFC 8482 answer.
        for i in $(seq 200); do
            printf 'host%d.example.com A\nexample%d.net MX\nmail%d.example.org TXT\n' \
                "$i" "$i" "$i"
        done > "$out/queries"
        echo 'example.com ANY' >> "$out/queries"
        if [ "$w" = dns ]; then
            for mode in udp-bare dns; do
                start "$mode"
                printf '%s: ' "$mode"
                dnsperf_run "$port"
                stop "$pid"
            done
        else
            dns_e2e
        fi
        ;;
    *) echo "unknown benchmark $w" >&2; exit 2 ;;
    esac
done
