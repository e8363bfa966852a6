#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Audit retention on a real daemon: with a retention of 2 s, old events are removed in the
# background, exported first (0600 JSONL), an audit.events.prune event records the removal, and
# the chain still verifies — through the API, offline, and against a checkpoint taken after the
# prune; a checkpoint from before the pruned range is refused as pruned, not as tampering.
. "$(dirname "$0")/lib.sh"
need curl python3 sqlite3
"$SEALVMD" init --data-dir data --owner-key-file owner.key 2>init.log || fail "init: $(cat init.log)"
mkdir -m 0700 export
cat >cfg.json <<JSON
{"audit_retention_s": 2, "audit_retention_interval_s": 1, "audit_export_dir": "$T/export"}
JSON
"$SEALVMD" --data-dir data --config cfg.json --listen 127.0.0.1:0 --s3-listen 127.0.0.1:0 >daemon.log 2>&1 &
DPID=$!
for _ in $(seq 1 100); do
	PORT=$(sed -n 's/.*serving on .* (port \([0-9]*\)).*/\1/p' daemon.log 2>/dev/null | head -1 || true)
	[ -n "$PORT" ] && break
	sleep 0.1
done
[ -n "$PORT" ] || { cat daemon.log >&2; fail "sealvmd did not start"; }
URL="http://127.0.0.1:$PORT"
TOK=$(token owner.key)
for n in 1 2 3 4 5; do [ "$(api POST /v1/serviceids "{\"name\":\"old-$n\"}")" = 201 ] || fail "create"; done
[ "$(api GET /v1/events/checkpoint)" = 200 ] || fail "checkpoint"
OLD_CP=$(jget 'j["checkpoint"]')
OLD_SEQ=$(jget 'j["seq"]')
# wait until the runner has pruned past the checkpoint (retention 2 s, every 1 s)
anchor=0
for _ in $(seq 1 150); do
	anchor=$(sqlite3 data/sealvm.db 'SELECT coalesce((SELECT seq FROM audit_anchor), 0)')
	[ "$anchor" -ge "$OLD_SEQ" ] && break
	sleep 0.2
done
[ "$anchor" -ge "$OLD_SEQ" ] || { cat daemon.log >&2; fail "events up to $OLD_SEQ were not pruned (anchor $anchor)"; }
TOK=$(token owner.key)
[ "$(api POST /v1/serviceids '{"name":"new"}')" = 201 ] || fail "create after prune"
[ "$(api GET /v1/events/verify)" = 200 ] && [ "$(jget 'j["ok"]')" = True ] || fail "verify after prune: $(cat .body)"
[ "$(jget 'j["pruned_through"] >= '"$OLD_SEQ")" = True ] || fail "pruned_through: $(cat .body)"
[ "$(api GET "/v1/events/verify?checkpoint=$OLD_CP")" = 409 ] || fail "a pruned checkpoint: $(cat .body)"
grep -q AUDIT_CHECKPOINT_PRUNED .body || fail "reason for a pruned checkpoint: $(cat .body)"
[ "$(api GET /v1/events/checkpoint)" = 200 ] || fail "checkpoint"
NEW_CP=$(jget 'j["checkpoint"]')
[ "$(api GET "/v1/events/verify?checkpoint=$NEW_CP")" = 200 ] && [ "$(jget 'j["ok"]')" = True ] || fail "a new checkpoint: $(cat .body)"
pass "the pruned chain verifies through the API; an old checkpoint is refused as pruned, a new one verifies"

kill -TERM $DPID; wait $DPID || fail "sealvmd did not exit 0"
DPID=
anchor=$(sqlite3 data/sealvm.db 'SELECT seq FROM audit_anchor')
# what is kept, rows and event-log records: it starts right after the anchor, a prune event among it
"$SEALVM" events export --data-dir data >kept.jsonl || fail "events export"
first=$(head -1 kept.jsonl | python3 -c 'import json,sys; print(json.load(sys.stdin)["seq"])')
[ "$first" = $((anchor + 1)) ] || fail "the first kept event ($first) does not follow the anchor ($anchor)"
grep -q '"action":"audit.events.prune"' kept.jsonl || fail "no prune event kept"
# exported first: every removed seq once, each line a chained event, files 0600
python3 - export "$anchor" <<'PY'
import json, os, stat, sys
d, anchor = sys.argv[1], int(sys.argv[2])
seqs = []
for f in sorted(os.listdir(d)):
    p = os.path.join(d, f)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600, f"{f} is not 0600"
    for line in open(p):
        r = json.loads(line)
        assert len(r["chain"]) == 64 and "eventTime" in r["event"], r
        seqs.append(r["seq"])
assert seqs == list(range(1, anchor + 1)), f"exported {seqs[:3]}..{seqs[-3:]} for anchor {anchor}"
PY
pass "events older than the retention were removed after being exported once each (0600 files)"
"$SEALVM" events verify --data-dir data >offline.out || fail "offline verify: $(cat offline.out)"
grep -q "removed by retention" offline.out || fail "offline verify does not say events were pruned"
pass "offline verify of the pruned chain"

# removing the oldest kept events by hand (and moving the anchor along) is still caught
sqlite3 data/sealvm.db "BEGIN; UPDATE audit_anchor SET seq = seq + 1, chain = (SELECT chain FROM audit_events WHERE seq = (SELECT seq + 1 FROM audit_anchor)); DELETE FROM audit_events WHERE seq <= (SELECT seq FROM audit_anchor); COMMIT;"
rc=0
"$SEALVM" events verify --data-dir data >forged.out 2>forged.err || rc=$?
[ $rc = 1 ] && grep -q "no retained audit.events.prune" forged.err || fail "a forged prune went unnoticed: $(cat forged.out forged.err)"
pass "removing the oldest events by hand and moving the anchor is detected"
