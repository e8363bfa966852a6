#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# sealvmd end to end with curl: init, tokens, service IDs, API keys, 401/403/404,
# one audit event per request, chain verification and tampering, restart, SIGTERM.
. "$(dirname "$0")/lib.sh"
need curl python3 sqlite3
TESTS=$(cd "$(dirname "$0")" && pwd)
[ -x "$SEALVMD" ] || fail "no sealvmd at $SEALVMD"
trap 'rc=$?; [ -n "${DPID:-}" ] && kill -9 $DPID 2>/dev/null; chattr -R -i "$T" 2>/dev/null; rm -rf "$T"; exit $rc' EXIT

# --- init -------------------------------------------------------------------------------
"$SEALVMD" init --data-dir data --owner-key-file owner.key 2>init.log
[ "$(stat -c %a data)" = 700 ] || fail "data dir mode $(stat -c %a data)"
[ "$(stat -c %a data/master.key)" = 600 ] || fail "master key mode"
[ "$(stat -c %a owner.key)" = 600 ] || fail "owner key file mode"
[ "$(wc -l <owner.key)" = 0 ] && [ "$(wc -c <owner.key)" -ge 40 ] || fail "owner key file content"
before=$(sha256sum data/master.key data/sealvm.db)
rc=0
"$SEALVMD" init --data-dir data --owner-key-file owner2.key 2>init2.log || rc=$?
[ $rc -eq 1 ] && grep -q ALREADY_INITIALISED init2.log || fail "second init did not refuse"
[ "$(sha256sum data/master.key data/sealvm.db)" = "$before" ] || fail "second init changed the data dir"
[ ! -e owner2.key ] || fail "second init wrote a key"
"$SEALVMD" init --data-dir data2 >stdout.key 2>/dev/null
[ "$(wc -l <stdout.key)" = 1 ] || fail "init to stdout: one line"
# an existing key file is refused before anything is created
echo keep >taken.key
rc=0
"$SEALVMD" init --data-dir data3 --owner-key-file taken.key 2>init3.log || rc=$?
[ $rc -eq 1 ] && grep -q OUTPUT_EXISTS init3.log || fail "init over an existing key file: $(cat init3.log)"
[ ! -e data3 ] && [ "$(cat taken.key)" = keep ] || fail "init over an existing key file created or changed something"
# a key file that cannot be written (its directory is missing) leaves no half-made data dir
rc=0
"$SEALVMD" init --data-dir data4 --owner-key-file nodir/owner.key 2>init4.log || rc=$?
[ $rc -eq 1 ] || fail "init with an unwritable key file succeeded"
[ ! -e data4 ] || fail "a failed init left $(ls data4)"
mkdir data5
rc=0
"$SEALVMD" init --data-dir data5 --owner-key-file nodir/owner.key 2>/dev/null || rc=$?
[ $rc -eq 1 ] && [ -d data5 ] && [ -z "$(ls -A data5)" ] || fail "a failed init in an existing dir left $(ls -A data5)"
pass "init: modes 0700/0600, key shown once, second init refuses and changes nothing; a failed init leaves nothing half-made"

# --- serve, tokens ------------------------------------------------------------------------
start_daemon data daemon.log
[ "$(curl -s "$URL/healthz")" = '{"status":"ok"}' ] || fail "healthz"
TOK=$(token owner.key)
[ -n "$TOK" ] || fail "no token"
curl -s -X POST "$URL/identity/token" -d "grant_type=urn:ibm:params:oauth:grant-type:apikey&apikey=$(cat owner.key)" >tok.json
python3 - tok.json <<'PY'
import json, sys, time
j = json.load(open(sys.argv[1]))
assert j["token_type"] == "Bearer" and j["expires_in"] == 3600 and j["refresh_token"] == "not_supported", j
assert abs(j["expiration"] - time.time() - 3600) < 120, j
PY
curl -s "$URL/identity/keys" | python3 -c 'import json,sys; k=json.load(sys.stdin)["keys"]; assert k and k[0]["kty"]=="EC" and k[0]["crv"]=="P-256", k'
pass "token from the owner API key (IAM shape), verification keys published"

# --- service ID, API key, authorization ----------------------------------------------------
[ "$(api POST /v1/serviceids '{"name":"image-reader","description":"reads images"}')" = 201 ] || fail "create service ID: $(cat .body)"
SID=$(jget 'j["id"]')
SIAM=$(jget 'j["iam_id"]')
[ "$(api POST /v1/apikeys "{\"name\":\"reader-key\",\"iam_id\":\"$SIAM\"}")" = 201 ] || fail "create API key: $(cat .body)"
KID=$(jget 'j["id"]')
jget 'j["apikey"]' | tr -d '\n' >sid.key
[ "$(api GET "/v1/apikeys/$KID")" = 200 ] || fail "get API key"
jget '"apikey" not in j' | grep -q True || fail "the API key value is shown again"
OWNER_TOK=$TOK
TOK=$(token sid.key)
[ "$(api GET /v1/serviceids)" = 403 ] || fail "service ID without a policy was not refused: $(cat .body)"
grep -q "iam-identity.serviceid.list" .body || fail "403 does not name the action"
TOK=$OWNER_TOK
pass "service ID + API key (value once); a service ID without a policy gets 403 naming the action"

# --- 401s ------------------------------------------------------------------------------------
TOK=
[ "$(api GET /v1/serviceids)" = 401 ] || fail "no token"
TOK=not.a.token
[ "$(api GET /v1/serviceids)" = 401 ] || fail "malformed token"
TOK=${OWNER_TOK%?}x
[ "$(api GET /v1/serviceids)" = 401 ] || fail "tampered token"
tr -d "\n" <stdout.key >d2.key
"$SEALVMD" --data-dir data2 --listen 127.0.0.1:0 --s3-listen 127.0.0.1:0 >d2.log 2>&1 &
D2=$!
for i in $(seq 1 50); do P2=$(sed -n 's/.*serving on .* (port \([0-9]*\)).*/\1/p' d2.log); [ -n "$P2" ] && break; sleep 0.1; done
FOREIGN=$(curl -sf -X POST "http://127.0.0.1:$P2/identity/token" --data-urlencode "grant_type=urn:ibm:params:oauth:grant-type:apikey" --data-urlencode "apikey@d2.key" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
kill -TERM $D2; wait $D2 || true
TOK=$FOREIGN
[ "$(api GET /v1/serviceids)" = 401 ] || fail "a token of another deployment was accepted"
python3 -c "import json; j=json.load(open('.body')); assert j['errorCode'] == 'TOKEN_UNKNOWN_KEY', j"
TOK=$OWNER_TOK
[ "$(api GET /v1/serviceids/ServiceId-00000000-0000-0000-0000-000000000000)" = 404 ] || fail "missing service ID"
[ "$(api GET /v1/nosuch)" = 404 ] || fail "unknown route"
[ "$(api DELETE /v1/serviceids)" = 405 ] || fail "wrong method"
[ "$(api POST /v1/serviceids '{"name": ')" = 400 ] || fail "malformed JSON"
grep -q "column" .body || fail "malformed JSON error has no position"
pass "401 (missing, malformed, tampered, foreign token), 404, 405, 400 with position — all JSON"

# --- resource instances -----------------------------------------------------------------------
TOK=$OWNER_TOK
[ "$(api POST /v2/resource_instances '{"name":"my-keys","target":"us-south","resource_id":"kms"}')" = 201 ] || fail "create instance: $(cat .body)"
GUID=$(jget 'j["guid"]')
[ "$(jget 'j["crn"].startswith("crn:v1:") and ":kms:us-south:a/" in j["crn"] and j["crn"].endswith(j["guid"] + "::")')" = True ] || fail "instance CRN: $(jget 'j["crn"]')"
[ "$(api POST /v2/resource_instances '{"name":"x","target":"eu-de","resource_id":"kms"}')" = 400 ] || fail "foreign region accepted"
grep -q "eu-de" .body || fail "the error does not name the region"
[ "$(api POST /v2/resource_instances '{"name":"x","target":"us-south","resource_id":"nosuch"}')" = 400 ] || fail "unknown service accepted"
[ "$(api POST /v2/resource_instances '{"target":"us-south","resource_id":"kms"}')" = 400 ] || fail "missing name accepted"
grep -q "name" .body || fail "the error does not name the field"
[ "$(api GET /v2/resource_instances)" = 200 ] && [ "$(jget 'j["rows_count"]')" = 1 ] || fail "list instances"
[ "$(api GET "/v2/resource_instances/$GUID")" = 200 ] || fail "get instance"
[ "$(api DELETE "/v2/resource_instances/$GUID")" = 204 ] || fail "delete instance"
[ "$(api GET "/v2/resource_instances/$GUID")" = 404 ] || fail "deleted instance still there"
[ "$(api POST /v2/resource_instances '{"name":"my-keys","target":"us-south","resource_id":"kms"}')" = 201 ] || fail "create instance again"
pass "resource instances: create (GUID, CRN), bad region/service/name refused naming the field, list, get, delete"

# --- the endpoints table: where object storage answers for the region (public) -------------------
curl -s -o .body -w '%{http_code}' "$URL/v2/endpoints" >.code
[ "$(cat .code)" = 200 ] || fail "GET /v2/endpoints: $(cat .code) $(cat .body)"
[ "$(jget 'j["service-endpoints"]["regional"]["us-south"]["public"]["us-south"]')" = "$S3_URL" ] ||
	fail "endpoints table does not name the S3 listener $S3_URL: $(cat .body)"
[ "$(jget 'sorted(j["service-endpoints"]["regional"])')" = "['us-south']" ] || fail "endpoints name other regions: $(cat .body)"
pass "GET /v2/endpoints (no credentials) names the S3 listener for the deployment's region only"

# --- audit: exactly one event per request ----------------------------------------------------
TOK=$OWNER_TOK
[ "$(api GET '/v1/events?action=iam-identity.account-serviceid.create')" = 200 ] || fail "events: $(cat .body)"
# so far: one create that succeeded, one that failed (the malformed JSON above)
[ "$(jget 'len(j["events"])')" = 2 ] || fail "service ID create events: $(jget 'len(j["events"])')"
[ "$(jget '[e["outcome"] for e in j["events"]]')" = "['success', 'failure']" ] || fail "outcomes"
[ "$(jget 'j["events"][0]["initiator"]["typeURI"]')" = service/security/account/user ] || fail "initiator"
for n in 1 2 3; do api POST /v1/serviceids "{\"name\":\"sid-$n\"}" >/dev/null; done
api POST /v1/serviceids '{"name": 7}' >/dev/null # a failing create is audited too
[ "$(api GET '/v1/events?action=iam-identity.account-serviceid.create&limit=1000')" = 200 ] || fail "events"
[ "$(jget 'len(j["events"])')" = 6 ] || fail "expected 6 create events (4 ok + 2 failed), got $(jget 'len(j["events"])')"
[ "$(jget 'sum(e["outcome"]=="failure" for e in j["events"])')" = 2 ] || fail "each failed create is not audited once"
grep -qF "$(cat owner.key)" data/sealvm.db && fail "API key in the database"
# a login names who logged in, with the API key as the credential (the owner exchanged one above)
[ "$(api GET '/v1/events?action=iam-identity.apikey.login')" = 200 ] || fail "login events"
OWNER_IAM=$(python3 -c 'import json,base64,sys; p=sys.argv[1].split(".")[1]; print(json.loads(base64.urlsafe_b64decode(p+"="*(-len(p)%4)))["iam_id"])' "$OWNER_TOK")
[ "$(jget 'j["events"][0]["initiator"]["id"]')" = "$OWNER_IAM" ] || fail "login initiator: $(jget 'j["events"][0]["initiator"]')"
[ "$(jget 'j["events"][0]["initiator"]["credential"]["type"]')" = apikey ] || fail "login credential type"
[ "$(jget 'j["events"][0]["initiator"]["typeURI"]')" = service/security/account/user ] || fail "login initiator type"
[ "$(api GET /v1/events/verify)" = 200 ] && [ "$(jget 'j["ok"]')" = True ] || fail "verify: $(cat .body)"
"$SEALVM" events verify --data-dir data | grep -q "^ok:" || fail "offline verify while the daemon runs"
pass "one audit event per request (failures too), chain verifies through the API"

# --- a service's own status (412/428) is what the audit event records ------------------------------
ACCT=$(python3 -c "import json,base64,sys; p='$OWNER_TOK'.split('.')[1]; print(json.loads(base64.urlsafe_b64decode(p + '=' * (-len(p) % 4)))['account']['bss'])")
POL="{\"type\":\"access\",\"subjects\":[{\"attributes\":[{\"name\":\"iam_id\",\"value\":\"$SIAM\"}]}],\"roles\":[{\"role_id\":\"crn:v1:bluemix:public:iam::::role:Viewer\"}],\"resources\":[{\"attributes\":[{\"name\":\"accountId\",\"value\":\"$ACCT\"},{\"name\":\"serviceName\",\"value\":\"iam-identity\"}]}]}"
[ "$(api POST /v1/policies "$POL")" = 201 ] || fail "create policy: $(cat .body)"
PID_=$(jget 'j["id"]')
[ "$(api PUT "/v1/policies/$PID_" "$POL")" = 428 ] || fail "PUT without If-Match: $(cat .body)"
[ "$(api GET '/v1/events?action=iam-am.policy.update')" = 200 ] || fail "events"
[ "$(jget '[e["reason"]["reasonCode"] for e in j["events"]]')" = "[428]" ] || fail "audit status of the 428: $(jget '[e["reason"]["reasonCode"] for e in j["events"]]')"
pass "the audit event records the status the service answered (428), not a generic one"

# --- one daemon a data dir -----------------------------------------------------------------------
# one daemon a data dir: a second one is refused (the event log has one writer) ...
rc=0
"$SEALVMD" --data-dir data --listen 127.0.0.1:0 --s3-listen none >second.log 2>&1 || rc=$?
[ $rc -ne 0 ] && grep -q DATA_DIR_BUSY second.log || fail "a second daemon on the same data dir: $(cat second.log)"
# ... while the offline commands work beside it
"$SEALVMD" rotate-signing-key --data-dir data >rotate.log 2>&1 || fail "rotate-signing-key beside a running daemon: $(cat rotate.log)"
[ "$(api GET "/v1/serviceids/$SID")" = 200 ] || fail "read after the rotation"
[ "$(api GET /v1/events/verify)" = 200 ] && [ "$(jget 'j["ok"]')" = True ] || fail "chain after an offline command beside the daemon: $(cat .body)"
pass "a second daemon on the data dir is refused; offline commands work beside the running one and the chain still verifies"

# --- checkpoints: a signed head, kept elsewhere, detects truncation ----------------------------
[ "$(api GET /v1/events/checkpoint)" = 200 ] || fail "checkpoint: $(cat .body)"
CP=$(jget 'j["checkpoint"]')
CPSEQ=$(jget 'j["seq"]')
api POST /v1/serviceids '{"name":"after-checkpoint"}' >/dev/null
[ "$(api GET "/v1/events/verify?checkpoint=$CP")" = 200 ] && [ "$(jget 'j["ok"]')" = True ] || fail "verify with checkpoint: $(cat .body)"
# change the signature's last character to another valid one (A <-> Q: both leave the unused bits zero)
case "${CP: -1}" in A) FORGED="${CP%?}Q" ;; *) FORGED="${CP%?}A" ;; esac
[ "$FORGED" != "$CP" ] || fail "the forged checkpoint equals the real one"
[ "$(api GET "/v1/events/verify?checkpoint=$FORGED")" = 400 ] || fail "a forged checkpoint was accepted"
stop_daemon
sqlite3 data/sealvm.db "DELETE FROM audit_events WHERE seq >= $CPSEQ;"
python3 "$TESTS/audit_log_edit.py" data truncate "$CPSEQ" # and the event log's records
start_daemon data daemon-trunc.log
TOK=$(token owner.key)
# the chain's own events after restart form a valid suffix of a valid prefix ...
[ "$(api GET "/v1/events/verify?checkpoint=$CP")" = 200 ] || fail "verify call"
[ "$(jget 'j["ok"]')" = False ] || fail "truncation below the checkpoint was not detected: $(cat .body)"
pass "checkpoint: signed head; verify proves the chain passes through it; truncation detected; forged checkpoint refused"

# --- restart keeps state; tampering is detected ------------------------------------------------
stop_daemon
sqlite3 data/sealvm.db "UPDATE audit_events SET event = replace(event, 'image-reader', 'image-readeX') WHERE seq = (SELECT min(seq) FROM audit_events WHERE event LIKE '%image-reader%');"
start_daemon data daemon2.log
TOK=$(token owner.key)
[ "$(api GET "/v1/serviceids/$SID")" = 200 ] || fail "service ID lost across restart"
[ "$(api GET /v1/events/verify)" = 200 ] || fail "verify call"
[ "$(jget 'j["ok"]')" = False ] || fail "tampering not detected"
[ "$(jget 'j["first_bad_seq"] > 0')" = True ] || fail "no first bad seq"
bad=$(jget 'j["first_bad_seq"]')
stop_daemon
rc=0
"$SEALVM" events verify --data-dir data >offline.out 2>offline.err || rc=$?
[ $rc -eq 1 ] && grep -q "first bad record seq $bad" offline.err || fail "offline verify did not find seq $bad: $(cat offline.err)"
# the same for an event of the log (a read's), its CRC recomputed: the chain catches it
start_daemon data daemon3.log
TOK=$(token owner.key)
[ "$(api GET "/v1/serviceids/$SID")" = 200 ] || fail "read after restart"
stop_daemon
bad=$(python3 "$TESTS/audit_log_edit.py" data replace '"reasonCode":200' '"reasonCode":201') || fail "no log record to edit"
rc=0
"$SEALVM" events verify --data-dir data >offline.out 2>offline.err || rc=$?
[ $rc -eq 1 ] && grep -q "first bad record seq" offline.err || fail "offline verify missed the edited log record $bad: $(cat offline.err)"
pass "restart keeps state; editing one stored event (a row, a log record) makes verify (API and offline --data-dir) fail at it; SIGTERM exits 0"

# --- events export: the whole trail, offline; its bad inputs -----------------------------------
"$SEALVM" events export --data-dir data >export.jsonl || fail "events export"
python3 - export.jsonl <<'PY' || fail "export is not every event in seq order"
import json, sys
seqs = [json.loads(l)["seq"] for l in open(sys.argv[1])]
assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) > 20, seqs[:5]
PY
rc=0; "$SEALVM" events export >x.out 2>x.err || rc=$?
[ $rc = 2 ] && grep -q -- "--data-dir" x.err && [ ! -s x.out ] || fail "export without --data-dir: rc $rc $(cat x.err)"
rc=0; "$SEALVM" events export --data-dir nodir >x.out 2>x.err || rc=$?
[ $rc = 1 ] && grep -q "cannot open" x.err && [ ! -s x.out ] && [ ! -e nodir ] || fail "export of a missing data dir: rc $rc $(cat x.err)"
rc=0; "$SEALVM" events export --data-dir data extra >x.out 2>x.err || rc=$?
[ $rc = 2 ] && grep -q "unexpected argument" x.err || fail "export with an extra argument: rc $rc"
pass "events export --data-dir prints every event in seq order; no --data-dir, a missing dir, an extra argument: clear errors, nothing printed or created"

# --- the S3 listener's settings ----------------------------------------------------------------
# refuse_start REASON ARGS... — sealvmd must exit non-zero at start, naming REASON, on data3
refuse_start() {
	local want=$1 rc=0
	shift
	"$SEALVMD" --data-dir data3 --listen 127.0.0.1:0 "$@" >refuse.log 2>&1 || rc=$?
	[ $rc -ne 0 ] || fail "sealvmd started with $*"
	grep -q "$want" refuse.log || fail "no $want for $*: $(cat refuse.log)"
}
"$SEALVMD" init --data-dir data3 --owner-key-file owner3.key 2>/dev/null
echo '{"cos": {"upload_max_age_s": 5}}' >cos-short.json
refuse_start 'cos.upload_max_age_s' --config cos-short.json
echo '{"cos": {"sweep_now": true}}' >cos-unknown.json
refuse_start 'CONFIG_UNKNOWN_KEY' --config cos-unknown.json
refuse_start 'NON_LOOPBACK_WITHOUT_TLS' --s3-listen 0.0.0.0:0
refuse_start 'LISTEN_INVALID' --s3-listen localhost:8730
[ ! -e data3/cos ] || [ -z "$(ls -A data3/cos/tmp 2>/dev/null)" ] || fail "a refused start left upload files"
# "none": no S3 listener, and the endpoints table names no region
"$SEALVMD" --data-dir data3 --listen 127.0.0.1:0 --s3-listen none >none.log 2>&1 &
DPID=$!
for _ in $(seq 1 100); do
	PORT=$(sed -n 's/.*serving on .* (port \([0-9]*\)).*/\1/p' none.log 2>/dev/null | head -1 || true)
	[ -n "$PORT" ] && break
	sleep 0.1
done
[ -n "$PORT" ] || { cat none.log >&2; fail "sealvmd --s3-listen none did not start"; }
URL="http://127.0.0.1:$PORT"
! grep -q "S3 on" none.log || fail "--s3-listen none still serves S3"
curl -s -o .body "$URL/v2/endpoints"
[ "$(jget 'j["service-endpoints"]["regional"]')" = "{}" ] || fail "endpoints with S3 off: $(cat .body)"
stop_daemon
pass "S3 listener settings: short upload age, unknown cos key, non-loopback without TLS, bad address refused at start; 'none' serves no S3"

# --- secrets ----------------------------------------------------------------------------------
python3 - data daemon.log daemon2.log owner.key sid.key "$OWNER_TOK" <<'PY'
import os, sys
root, logs, keys, tok = sys.argv[1], sys.argv[2:4], sys.argv[4:6], sys.argv[6]
needles = [open(k, "rb").read().strip() for k in keys] + [tok.encode(), tok.split(".")[2].encode()]
files = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs] + logs
for f in files:
    data = open(f, "rb").read()
    for n in needles:
        assert n not in data, f"a secret is in {f}"
PY
pass "no API key value or token in the data dir or the logs"
