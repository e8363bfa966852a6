#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Requests that belong to no account are recorded for the operator, bounded: per
# source and window the first N one by one, the rest as a count in one aggregate
# event — nothing lost from the tally, and a flood cannot fill the disk. The access logs of
# both listeners are bounded the same way (lines, then a count).
. "$(dirname "$0")/lib.sh"
need curl sqlite3 python3

"$SEALVMD" init --data-dir data --owner-key-file owner.key 2>/dev/null
echo '{"audit_unauthenticated_max": 5, "audit_window_s": 3}' >cfg.json
"$SEALVMD" --data-dir data --config cfg.json --listen 127.0.0.1:0 --s3-listen 127.0.0.1:0 >d.log 2>&1 &
DPID=$!
trap 'rc=$?; kill -9 $DPID 2>/dev/null || true; rm -rf "$T"; exit $rc' EXIT
for i in $(seq 1 100); do PORT=$(sed -n 's/.*serving on .* (port \([0-9]*\)).*/\1/p' d.log); [ -n "$PORT" ] && break; sleep 0.1; done
[ -n "$PORT" ] || fail "no port"
S3PORT=$(sed -n 's/.*S3 on .* (port \([0-9]*\)).*/\1/p' d.log)
# flood N URL STATUS — N requests without credentials, each answered STATUS
flood() {
	for _ in $(seq 1 "$1"); do
		code=$(curl -s -o /dev/null -w '%{http_code}' "$2")
		[ "$code" = "$3" ] || fail "$2: expected $3, got $code"
	done
}
sent=40 s3sent=30
flood $sent "http://127.0.0.1:$PORT/v1/serviceids" 401
flood $s3sent "http://127.0.0.1:$S3PORT/some-bucket/k" 403
sleep 4 # into a later window: the next request flushes the count of the previous one
curl -s -o /dev/null "http://127.0.0.1:$PORT/v1/serviceids"
sent=$((sent + 1))
# the healthy requests of an unauthenticated source are not bounded
for i in $(seq 1 20); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/healthz" || fail "healthz"; done
kill -TERM $DPID; wait $DPID
# The access log is bounded the same way: per source and window the first 5 failures are
# logged, the rest counted in one "suppressed=N" line (at the next window, or at the stop).
python3 - d.log "$sent" "$s3sent" <<'PY' || fail "access log bound: $(grep -c access d.log) access lines"
import re, sys
log = open(sys.argv[1]).read().splitlines()
sent, s3sent = int(sys.argv[2]), int(sys.argv[3])
for prefix, n, status in (("access", sent, 401), ("s3 access", s3sent, 403)):
    lines = [l for l in log if re.search(r": notice: %s id=.* status=%d .*principal=-" % (prefix, status), l)]
    supp = sum(int(m.group(1)) for l in log
               for m in [re.search(r": notice: %s suppressed=(\d+) remote=127\.0\.0\.1 " %
                                   ("http access" if prefix == "access" else "s3 access"), l)] if m)
    print(f"{prefix}: {n} failed, {len(lines)} lines, {supp} counted in suppressed lines")
    assert len(lines) + supp == n, "the tally does not add up"
    assert supp > 0 and len(lines) <= 5 * 3, "not bounded"
ok = [l for l in log if re.search(r": notice: access id=.* path=/healthz status=200 ", l)]
assert len(ok) == 20, len(ok)
PY
pass "the access logs (API and S3): failures without credentials bounded per source and window, every one counted; successes all logged"
"$SEALVM" events export --data-dir data >events.jsonl || fail "events export"
python3 - events.jsonl "$((sent + s3sent))" <<'PY'
import json, sys
sent = int(sys.argv[2])
lines = [json.loads(l) for l in open(sys.argv[1])]
assert [l["seq"] for l in lines] == sorted(l["seq"] for l in lines), "export is in seq order"
rows = [l["event"] for l in lines if "accountId" not in l["event"]]
single = [e for e in rows if e["action"] != "sealvm.unauthenticated-requests.aggregate"]
agg = [e for e in rows if e["action"] == "sealvm.unauthenticated-requests.aggregate"]
suppressed = sum(e["requestData"]["suppressed"] for e in agg)
print(f"sent {sent}: {len(single)} recorded one by one, {len(agg)} aggregate events counting {suppressed}")
assert {e["requestData"]["listener"] for e in agg} == {"api", "s3"}, "an aggregate per listener"
assert len(single) + suppressed == sent, "the tally does not add up"
assert len(single) <= 2 * 5 * 3, "more single events than the bound allows"
assert all(e["reason"]["reasonCode"] in (401, 403) for e in rows)
PY
pass "unauthenticated requests on both listeners: bounded per source and window, every request counted (the last counts at the stop)"
