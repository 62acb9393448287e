#!/usr/bin/env bash
# Anchor for the PostgreSQL sink benchmark: how fast the local server itself takes 100,000 rows
# of the sink's table shape through psql's \copy (no apiary involved). Compare with
# `cargo bench -p apiary-sinks --bench sinks -- postgres` run on the same machine.
# Needs psql and a PostgreSQL on 127.0.0.1:5432 (user postgres, database test, trust auth).
set -euo pipefail
data=$(mktemp)
trap 'rm -f "$data"' EXIT
psql -q -h 127.0.0.1 -U postgres test <<SQL
\timing off
CREATE TEMP TABLE src AS SELECT gen_random_uuid() id, now() t, 'session.rx' k, 'bench-node' n,
  'Telnet' s, '203.0.113.7'::inet si, 4000 sp, '192.0.2.1'::inet di, 23 dp, gen_random_uuid() ss,
  ('{"id":"' || gen_random_uuid() || '","time":"2026-11-23T20:00:00.000000Z","kind":"session.rx","node":"bench-node","service":"Telnet","protocol":"telnet","transport":"tcp","src_ip":"203.0.113.7","src_port":4000,"dst_ip":"192.0.2.1","dst_port":23,"session":"0193b3c1-0000-7000-8000-000000000000","payload":{"len":13,"sha256":"b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9","b64":"cm9vdA0KYWRtaW4NCg=="}}') e
  FROM generate_series(1, 100000);
\copy src TO '$data'
DROP TABLE IF EXISTS anchor_events;
CREATE TABLE anchor_events (id uuid PRIMARY KEY, time timestamptz NOT NULL, kind text NOT NULL,
  node text NOT NULL, service text, src_ip inet, src_port integer, dst_ip inet, dst_port integer,
  session uuid, event jsonb NOT NULL);
CREATE INDEX ON anchor_events (time);
SQL
start=$(date +%s.%N)
psql -q -h 127.0.0.1 -U postgres test -c "\\copy anchor_events FROM '$data'"
end=$(date +%s.%N)
psql -q -h 127.0.0.1 -U postgres test -c "DROP TABLE anchor_events"
awk -v s="$start" -v e="$end" 'BEGIN { printf "psql \\copy of 100000 rows: %.2f s, %.0f rows/s\n", e - s, 100000 / (e - s) }'
