#!/bin/bash
# SSH benchmark, one run, three servers on loopback:
#   apiary's SSH service (the load generator's `serve` mode: the real service, events to JSONL),
#   Debian's OpenSSH sshd (own config and host key in a temp dir), and Cowrie from PyPI (a venv
#   under bench/out).
# 1. Full handshakes with one wrong password per second (key exchange, `root` + a wrong
#    password, disconnect), same concurrency against each, ROUNDS alternating rounds.
#    No artificial rejection delay anywhere: apiary's `auth_delay` is 0, sshd runs without PAM
#    (its fixed 5-9 ms failure padding in auth2.c cannot be turned off; it sleeps, it does not
#    burn CPU), and Cowrie's Twisted `passwordDelay` (1 s, not in cowrie.cfg) is set to 0 by the
#    launcher. apiary as shipped (`auth_delay` 300 ms) and Cowrie as shipped (1 s) are
#    measured once as well.
# 2. SESSIONS concurrent interactive sessions (password accepted, pty, shell, prompt read) held
#    against apiary and Cowrie; server RSS (VmRSS) before and after, per session = delta / N.
#
#    sshd (a process per session, so 3 processes and a root bash each, logged in with a key):
#    SSHD_SESSIONS (default 200) held, the sum of RSS and of PSS over its process tree.
#
# Usage (as root: sshd needs it; Cowrie is run as `nobody`):
#   bench/ssh/run.sh [SECS=10] [CONC=32] [ROUNDS=2] [SESSIONS=1000]
# Env: LOADGEN=path (a prebuilt load generator, no build), SKIP_COWRIE=1, SKIP_SSHD=1, TASKSET_SERVER / TASKSET_CLIENT (e.g. "taskset -c 0").
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
conc=${2:-32}
rounds=${3:-2}
sessions=${4:-1000}
out=$PWD/bench/out/ssh
srv=${TASKSET_SERVER:-}
cli=${TASKSET_CLIENT:-}
mkdir -p "$out"
ulimit -n "$(ulimit -Hn)"  # 1,000 sessions need about 1,000 descriptors per side

if [ -z "${LOADGEN:-}" ]; then
    (cd bench/ssh/loadgen && cargo build --release -q)
fi
lg=${LOADGEN:-$PWD/bench/ssh/loadgen/target/release/apiary-ssh-bench}

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() {
    for _ in $(seq 200); do
        (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on $1" >&2
    return 1
}
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
# Sum of a field (VmRSS in status, Pss in smaps_rollup) over a process and its descendants:
# sshd serves each session with a monitor, an unprivileged child and the user's shell.
tree_kib() { # pid file field
    local all=" $1 " more=1
    while [ "$more" = 1 ]; do
        more=0
        while read -r p pp; do
            case "$all" in *" $pp "*) case "$all" in *" $p "*) ;; *) all="$all$p "; more=1;; esac;; esac
        done < <(ps -e -o pid=,ppid=)
    done
    local sum=0 p v
    for p in $all; do
        v=$(awk -v f="$3:" '$1 == f {print $2}' "/proc/$p/$2" 2>/dev/null || true)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

# --- (a) apiary ------------------------------------------------------------------------------
# `serve DIR ACCEPT DELAY_MS` prints its port; the process is the server.
start_apiary() { # accept-policy [auth-delay-ms, default 0] -> sets apiary_pid, apiary_port
    local dir=$out/apiary-$1
    rm -rf "$dir"; mkdir -p "$dir"
    local fifo; fifo=$(mktemp -u); mkfifo "$fifo"
    $srv "$lg" serve "$dir" "$1" "${2:-0}" > "$fifo" 2> "$dir/stderr" &
    apiary_pid=$!; pids+=("$apiary_pid")
    read -r apiary_port < "$fifo"; rm -f "$fifo"
}

# --- (b) OpenSSH sshd ------------------------------------------------------------------------
start_sshd() {
    local dir=$out/sshd
    rm -rf "$dir"; mkdir -p "$dir"
    ssh-keygen -q -t ed25519 -N '' -f "$dir/ssh_host_ed25519_key"
    # The held sessions log in as root with this key (no account password is touched).
    ssh-keygen -q -t ed25519 -N '' -f "$dir/client_key"
    cp "$dir/client_key.pub" "$dir/authorized_keys"
    sshd_port=$(free_port)
    # PerSourcePenalties exists from OpenSSH 9.8 on; Debian 12 ships 9.2 (no penalties).
    local penalties=""
    if /usr/sbin/sshd -T -f /dev/null -o PerSourcePenalties=no -h "$dir/ssh_host_ed25519_key" >/dev/null 2>&1; then
        penalties="PerSourcePenalties no"
    fi
    cat > "$dir/sshd_config" <<EOF
Port $sshd_port
ListenAddress 127.0.0.1
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
UsePAM no
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitRootLogin yes
PubkeyAuthentication yes
AuthorizedKeysFile $dir/authorized_keys
MaxStartups 10000
MaxAuthTries 6
MaxSessions 10
LoginGraceTime 60
UseDNS no
StrictModes no
$penalties
EOF
    mkdir -p /run/sshd
    $srv /usr/sbin/sshd -D -e -f "$dir/sshd_config" 2> "$dir/log" &
    sshd_pid=$!; pids+=("$sshd_pid")
    wait_port "$sshd_port"
}

# --- (c) Cowrie ------------------------------------------------------------------------------
venv=$PWD/bench/out/cowrie-venv
start_cowrie() { # delay-seconds (empty: as shipped) -> sets cowrie_pid, cowrie_port
    local dir=$out/cowrie
    if [ ! -x "$venv/bin/twistd" ] || ! "$venv/bin/python" -c 'import cowrie' 2>/dev/null; then
        # Debian's python: Cowrie runs as nobody, who cannot reach a python under /root.
        /usr/bin/python3 -m venv "$venv"
        "$venv/bin/pip" install -q cowrie
    fi
    rm -rf "$dir"; mkdir -p "$dir/etc" "$dir/var/log/cowrie" "$dir/var/lib/cowrie/downloads" \
        "$dir/var/lib/cowrie/tty" "$dir/var/run"
    cowrie_port=$(free_port)
    cat > "$dir/etc/cowrie.cfg" <<EOF
[honeypot]
hostname = bench
[ssh]
listen_endpoints = tcp:$cowrie_port:interface=127.0.0.1
[telnet]
enabled = false
EOF
    # root/123456 gets in (the held sessions), any other password fails (the race).
    echo "root:x:123456" > "$dir/etc/userdb.txt"
    chown -R nobody "$dir"
    local patch=""
    if [ -n "$1" ]; then
        patch="from twisted.conch.ssh import userauth; userauth.SSHUserAuthServer.passwordDelay = $1;"
    fi
    # `cowrie start` refuses root and daemonises; this is what it executes, in the foreground,
    # as nobody, with the optional delay patch applied first.
    (cd "$dir" && exec $srv setpriv --reuid=nobody --regid=nogroup --clear-groups \
        env HOME="$dir" "$venv/bin/python" -c "import sys; $patch
from twisted.scripts.twistd import run
sys.argv = ['twistd', '-n', '--umask=0022', '--logger', 'cowrie.python.logfile.stdoutLogger', 'cowrie']
run()" > "$dir/stdout" 2>&1) &
    cowrie_pid=$!; pids+=("$cowrie_pid")
    wait_port "$cowrie_port"
}

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# CPU time (clock ticks) of a process plus its reaped children (sshd's per-connection processes
# end up in the listener's cutime/cstime once reaped). Fields after the `(comm)` field.
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13 + $14 + $15}'; }
tck=$(getconf CLK_TCK)

rate() { # name port pid -> prints one line, sets last_rate and last_ms (server CPU per handshake)
    local line t0 t1 n
    t0=$(cpu_ticks "$3")
    line=$($cli "$lg" rate "127.0.0.1:$2" "$secs" "$conc")
    sleep 1  # let sshd reap the last connections
    t1=$(cpu_ticks "$3")
    last_rate=$(echo "$line" | awk '{print $1}')
    n=$(echo "$line" | sed 's/.*(\([0-9]*\) in.*/\1/')
    last_ms=$(awk -v d=$((t1 - t0)) -v n="$n" -v h="$tck" 'BEGIN {printf "%.2f", d * 1000 / h / n}')
    printf '  %-22s %s; server CPU %s ms per handshake\n' "$1" "$line" "$last_ms"
}

echo "# machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
echo "# sshd: $(/usr/sbin/sshd -V 2>&1 | head -1); cowrie: $("$venv/bin/pip" show cowrie 2>/dev/null | awk '/^Version/ {print $2}')"
echo "## failed-password handshakes/s, $secs s per server, concurrency $conc"

start_apiary never
[ -n "${SKIP_SSHD:-}" ] || start_sshd
[ -n "${SKIP_COWRIE:-}" ] || start_cowrie 0
for r in $(seq "$rounds"); do
    echo "round $r (load average $(cut -d' ' -f1 /proc/loadavg))"
    rate "apiary (auth_delay 0)" "$apiary_port" "$apiary_pid"; a=$last_rate; am=$last_ms
    s=""; c=""
    if [ -z "${SKIP_SSHD:-}" ]; then
        rate "sshd (UsePAM no)" "$sshd_port" "$sshd_pid"; s=$last_rate; sm=$last_ms
    fi
    if [ -z "${SKIP_COWRIE:-}" ]; then
        rate "cowrie (delay 0)" "$cowrie_port" "$cowrie_pid"; c=$last_rate; cm=$last_ms
    fi
    # Rates, and the inverse ratio of server CPU per handshake (less sensitive to other load).
    [ -z "$s" ] || echo "  apiary / sshd   = $(awk -v a="$a" -v b="$s" 'BEGIN {printf "%.2f", a / b}')" \
        "(CPU per handshake: $(awk -v a="$am" -v b="$sm" 'BEGIN {printf "%.2f", b / a}'))"
    [ -z "$c" ] || echo "  apiary / cowrie = $(awk -v a="$a" -v b="$c" 'BEGIN {printf "%.2f", a / b}')" \
        "(CPU per handshake: $(awk -v a="$am" -v b="$cm" 'BEGIN {printf "%.2f", b / a}'))"
done
stop "$apiary_pid"
[ -n "${SKIP_SSHD:-}" ] || stop "$sshd_pid"
# The shipped rejection delays, for the record (each caps a client at one attempt per delay).
start_apiary never 300
rate "apiary (as shipped)" "$apiary_port" "$apiary_pid"
stop "$apiary_pid"
if [ -z "${SKIP_COWRIE:-}" ]; then
    stop "$cowrie_pid"
    start_cowrie ""
    rate "cowrie (as shipped)" "$cowrie_port" "$cowrie_pid"
    stop "$cowrie_pid"
fi

# --- held sessions ---------------------------------------------------------------------------
hold() { # name pid port
    local fifo_in fifo_out before after line
    fifo_in=$(mktemp -u); fifo_out=$(mktemp -u); mkfifo "$fifo_in" "$fifo_out"
    sleep 1
    before=$(rss_kib "$2")
    $cli "$lg" hold "127.0.0.1:$3" "$sessions" < "$fifo_in" > "$fifo_out" &
    local hp=$!
    exec 7> "$fifo_in"
    read -r line < "$fifo_out"
    sleep 2
    after=$(rss_kib "$2")
    echo "  $1: $line; RSS $before KiB -> $after KiB, per session" \
        "$(awk -v a="$after" -v b="$before" -v n="$sessions" 'BEGIN {printf "%.1f", (a - b) / n}') KiB"
    exec 7>&-
    wait "$hp" || true
    rm -f "$fifo_in" "$fifo_out"
}

echo "## $sessions concurrent interactive sessions (load average $(cut -d' ' -f1 /proc/loadavg))"
start_apiary any
hold "apiary" "$apiary_pid" "$apiary_port"
stop "$apiary_pid"
if [ -z "${SKIP_COWRIE:-}" ]; then
    start_cowrie 0
    hold "cowrie" "$cowrie_pid" "$cowrie_port"
    stop "$cowrie_pid"
fi
if [ -z "${SKIP_SSHD:-}" ]; then
    n=${SSHD_SESSIONS:-200}
    start_sshd
    sleep 1
    rss0=$(tree_kib "$sshd_pid" status VmRSS); pss0=$(tree_kib "$sshd_pid" smaps_rollup Pss)
    fifo_in=$(mktemp -u); fifo_out=$(mktemp -u); mkfifo "$fifo_in" "$fifo_out"
    $cli "$lg" hold "127.0.0.1:$sshd_port" "$n" "$out/sshd/client_key" < "$fifo_in" > "$fifo_out" &
    hp=$!
    exec 7> "$fifo_in"
    read -r line < "$fifo_out"
    sleep 2
    rss1=$(tree_kib "$sshd_pid" status VmRSS); pss1=$(tree_kib "$sshd_pid" smaps_rollup Pss)
    echo "  sshd: $line (hold $n); process tree RSS $rss0 -> $rss1 KiB," \
        "$(awk -v a="$rss1" -v b="$rss0" -v n="$n" 'BEGIN {printf "%.1f", (a - b) / n}') KiB per session;" \
        "PSS $pss0 -> $pss1 KiB, $(awk -v a="$pss1" -v b="$pss0" -v n="$n" 'BEGIN {printf "%.1f", (a - b) / n}') KiB per session"
    exec 7>&-
    wait "$hp" || true
    rm -f "$fifo_in" "$fifo_out"
    stop "$sshd_pid"
fi
