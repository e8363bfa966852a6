#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A data dir on a full disk: audit is fail-closed. Reads whose event cannot be written are
# refused (503 AUDIT_UNAVAILABLE, JSON) and leave no event; nothing is half-made; once space is
# back the server answers again without a restart, the chain verifies, and every answered
# read has exactly one event. The data dir lives on a small tmpfs mounted for the test.
. "$(dirname "$0")/lib.sh"
need curl python3 mount umount
[ "$(id -u)" = 0 ] || skip "needs root to mount a small tmpfs for the data dir"
mkdir fs
mount -t tmpfs -o size=8m,mode=0700 tmpfs fs 2>/dev/null || skip "cannot mount a tmpfs here"
DPID=
trap 'rc=$?; [ -n "$DPID" ] && kill -9 $DPID 2>/dev/null; wait 2>/dev/null; umount fs 2>/dev/null; rm -rf "$T"; exit $rc' EXIT

"$SEALVMD" init --data-dir fs/data --owner-key-file owner.key 2>/dev/null
start_daemon fs/data d.log
TOK=$(token owner.key)
[ "$(api POST /v1/serviceids '{"name":"before"}')" = 201 ] || fail "create before the disk fills"

# Fill the file system, then read until the event log has no room left.
dd if=/dev/zero of=fs/filler bs=64k status=none 2>/dev/null || true
[ "$(df --output=avail fs | tail -1)" -eq 0 ] || fail "the filler did not fill the disk"
SEALVM_TEST_TOKEN=$TOK python3 - "$PORT" >reads.out <<'PY' || fail "reads on a full disk: $(cat reads.out)"
import http.client, json, os, sys
port, tok = int(sys.argv[1]), os.environ["SEALVM_TEST_TOKEN"]  # not in argv
c = http.client.HTTPConnection("127.0.0.1", port)
ok = 0
for _ in range(50000):
    c.request("GET", "/v1/serviceids", headers={"Authorization": "Bearer " + tok})
    r = c.getresponse()
    body = r.read()
    if r.status == 200:
        ok += 1
        continue
    j = json.loads(body)  # an error is JSON, never an empty or HTML body
    assert r.status == 503, (r.status, body)
    assert j["errorCode"] == "AUDIT_UNAVAILABLE", body
    print(ok)
    sys.exit(0)
print("no refusal after", ok, "reads")
sys.exit(1)
PY
ok=$(cat reads.out)
[ "$ok" -gt 0 ] || fail "no read was answered before the disk was full"
grep -q "No space left on device" d.log || fail "the server's log does not say why it refused"
# Zeros written ahead are only a speed-up: without room for them, reads go on while their
# events themselves fit.
warned=$(grep -n "cannot write zeros ahead" d.log | head -1 | cut -d: -f1)
last_ok=$(grep -n "method=GET path=/v1/serviceids status=200" d.log | tail -1 | cut -d: -f1)
[ -n "$warned" ] && [ "$last_ok" -gt "$warned" ] ||
	fail "no read answered once zeros could not be written ahead (line $warned, last 200 $last_ok)"
pass "full disk: reads answered while their events fit ($ok), then refused 503 AUDIT_UNAVAILABLE (JSON)"

# A change on the full disk: whatever it answers, it is whole or absent.
created=$(api POST /v1/serviceids '{"name":"during"}')
case $created in
201) ;;
503) grep -q '"DB_COMMIT_FAILED"' "$T/.body" || fail "a full disk, but: $(cat "$T/.body")" ;;
*) fail "create on a full disk answered $created (a full disk is 503): $(cat "$T/.body")" ;;
esac
[ "$(api GET /v1/serviceids/none-such)" = 503 ] || fail "a read on the full disk was answered"

# Space comes back: answered again, same process.
rm fs/filler
[ "$(api GET /v1/serviceids)" = 200 ] || fail "reads after space came back: $(cat "$T/.body")"
ok=$((ok + 1))
names=$(jget '" ".join(sorted(s["name"] for s in j["serviceids"]))')
if [ "$created" = 201 ]; then
	[ "$names" = "before during" ] || fail "created on a full disk, but listed as: $names"
else
	[ "$names" = "before" ] || fail "refused on a full disk, yet listed: $names"
fi
pass "a change on the full disk is whole or absent ($created); answers resume once space is back"

stop_daemon
"$SEALVM" events verify --data-dir fs/data >verify.out 2>&1 || { cat verify.out >&2; fail "verify after a full disk"; }
"$SEALVM" events export --data-dir fs/data >events.jsonl
lists=$(python3 - events.jsonl <<'PY'
import json, sys
n = 0
for line in open(sys.argv[1]):
    e = json.loads(line)["event"]
    if e["action"] == "iam-identity.account-serviceid.list" and e["outcome"] == "success":
        n += 1
print(n)
PY
)
[ "$lists" = "$ok" ] || fail "$ok reads answered, $lists recorded"
start_daemon fs/data d2.log
TOK1=$TOK
TOK=$(token owner.key)
[ "$(api GET /v1/serviceids)" = 200 ] || fail "restart after a full disk"
stop_daemon
# The error paths of a full disk log no credential.
for secret in "$TOK1" "$TOK" "$(cat owner.key)"; do
	! grep -rqF -- "$secret" fs/data d.log d2.log || fail "a credential in the data dir or the logs"
done
pass "the chain verifies; one event per answered read ($ok), none for a refused one; restarts clean"
