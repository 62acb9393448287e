#!/usr/bin/env bash
# Sensor benchmarks: replay + tracking + packet_log JSONL on one core, beside tshark -r and
# tcpdump -r on the same generated file in the same run; then the live loopback burst (root).
# Usage: bench/sensor/run.sh [PACKETS]   (needs: apt-get install -y tshark tcpdump)
#        CALLGRIND=1 bench/sensor/run.sh   also counts instructions per packet (needs valgrind)
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${1:-1000000}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cargo build --release -q -p apiary-sensor --no-default-features --examples
EX="${CARGO_TARGET_DIR:-target}/release/examples"
"$EX/gen_pcap" "$WORK/mixed.pcap" "$N"
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "== apiary-sensor replay + tracking + packet_log JSONL (one core)"
taskset -c 0 "$EX/replay_jsonl" "$WORK/mixed.pcap" "$WORK/out.jsonl"
echo "   records written: $(wc -l < "$WORK/out.jsonl")"
if command -v tcpdump >/dev/null; then
  echo "== tcpdump -r FILE -w /dev/null (raw read limit)"
  s=$(date +%s.%N); tcpdump -r "$WORK/mixed.pcap" -w /dev/null 2>/dev/null; e=$(date +%s.%N)
  awk -v n="$N" -v s="$s" -v e="$e" 'BEGIN { printf "   %.3f s: %.0f packets/s\n", e-s, n/(e-s) }'
fi
if command -v tshark >/dev/null; then
  # Full dissection of a 10% sample (tshark is slow), scaled to packets/s.
  M=$(( N / 10 ))
  "$EX/gen_pcap" "$WORK/sample.pcap" "$M"
  echo "== tshark -r FILE (full dissection, $M packets)"
  s=$(date +%s.%N); tshark -r "$WORK/sample.pcap" > /dev/null 2>&1; e=$(date +%s.%N)
  awk -v n="$M" -v s="$s" -v e="$e" 'BEGIN { printf "   %.3f s: %.0f packets/s\n", e-s, n/(e-s) }'
fi
if [ "$(id -u)" = 0 ]; then
  echo "== live burst: 20,000 new UDP flows in about 1 s on lo"
  "$EX/burst" 20000
else
  echo "== live burst skipped (needs root)"
fi
if [ "${CALLGRIND:-0}" = 1 ] && command -v valgrind >/dev/null; then
  # Instruction count: the load-independent measure on a shared machine.
  "$EX/gen_pcap" "$WORK/small.pcap" 200000 >/dev/null
  echo "== callgrind: replay_jsonl on 200,000 packets of the same mix"
  valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" \
    "$EX/replay_jsonl" "$WORK/small.pcap" "$WORK/small.jsonl" 2>&1 |
    awk '/refs:/ { gsub(",", "", $NF); printf "   %s instructions: %.0f per packet\n", $NF, $NF / 200000 }'
fi
echo "== criterion: cargo bench -p apiary-sensor --no-default-features --bench replay"
