#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Requests that belong to no account are recorded for the operator, bounded: per
# source and window the first N one by one, the rest as a count in one aggregate
# event — nothing lost from the tally, and a flood cannot fill the disk.
. "$(dirname "$0")/lib.sh"
need curl sqlite3 python3

"$SEALVMD" init --data-dir data --owner-key-file owner.key 2>/dev/null
echo '{"audit_unauthenticated_max": 5, "audit_window_s": 3}' >cfg.json
"$SEALVMD" --data-dir data --config cfg.json --listen 127.0.0.1:0 --s3-listen 127.0.0.1:0 >d.log 2>&1 &
DPID=$!
trap 'rc=$?; kill -9 $DPID 2>/dev/null || true; rm -rf "$T"; exit $rc' EXIT
for i in $(seq 1 100); do PORT=$(sed -n 's/.*serving on .* (port \([0-9]*\)).*/\1/p' d.log); [ -n "$PORT" ] && break; sleep 0.1; done
[ -n "$PORT" ] || fail "no port"
sent=0
for i in $(seq 1 40); do
	code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/v1/serviceids")
	[ "$code" = 401 ] || fail "expected 401, got $code"
	sent=$((sent + 1))
done
sleep 4 # into a later window: the next request flushes the count of the previous one
curl -s -o /dev/null "http://127.0.0.1:$PORT/v1/serviceids"
sent=$((sent + 1))
kill -TERM $DPID; wait $DPID
python3 - data/sealvm.db "$sent" <<'PY'
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
sent = int(sys.argv[2])
rows = [json.loads(r[0]) for r in db.execute("SELECT event FROM audit_events WHERE account_id IS NULL ORDER BY seq")]
single = [e for e in rows if e["action"] != "sealvm.unauthenticated-requests.aggregate"]
agg = [e for e in rows if e["action"] == "sealvm.unauthenticated-requests.aggregate"]
suppressed = sum(e["requestData"]["suppressed"] for e in agg)
print(f"sent {sent}: {len(single)} recorded one by one, {len(agg)} aggregate events counting {suppressed}")
assert agg, "no aggregate event"
assert len(single) + suppressed == sent, "the tally does not add up"
assert len(single) <= 5 * 3, "more single events than the bound allows"
assert all(e["reason"]["reasonCode"] == 401 for e in rows)
PY
pass "unauthenticated requests: bounded per source and window, every request counted"
