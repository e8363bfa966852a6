#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# HMAC resource keys of object storage instances against a real sealvmd, with curl and the
# CLI: create for the caller and for a service ID (IBM's shape, the secret once), list/show
# without the secret, delete; wrong sources, service IDs and bodies refused with the right
# status and reason and nothing created; the secret never in clear in the data dir, the log or
# the audit trail. With botocore (/usr/bin/python3) and the hmac_peer program: a request signed
# with the created credentials verifies through sigv4 + rc_hmac_lookup, and not once deleted.
. "$(dirname "$0")/lib.sh"
need curl python3
[ -x "$SEALVMD" ] || fail "no sealvmd at $SEALVMD"
trap 'rc=$?; [ -n "${DPID:-}" ] && kill -9 $DPID 2>/dev/null; rm -rf "$T"; exit $rc' EXIT
export XDG_CONFIG_HOME="$T/config"
unset SEALVM_ENDPOINT SEALVM_TOKEN SEALVM_APIKEY_FILE
S() { "$SEALVM" "$@"; }
jf() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }
nkeys() { api GET /v2/resource_keys >/dev/null; jget 'j["rows_count"]'; }

"$SEALVMD" init --data-dir data --owner-key-file owner.key 2>init.log
start_daemon data daemon.log
TOK=$(token owner.key)

[ "$(api POST /v2/resource_instances '{"name":"cos","target":"us-south","resource_id":"cloud-object-storage"}')" = 201 ] || fail "cos instance: $(cat .body)"
COS=$(jget 'j["guid"]'); COS_CRN=$(jget 'j["crn"]')
[ "$(api POST /v2/resource_instances '{"name":"kp","target":"us-south","resource_id":"kms"}')" = 201 ] || fail "kms instance"
KP=$(jget 'j["guid"]')
[ "$(api POST /v1/serviceids '{"name":"s3-writer"}')" = 201 ] || fail "service id: $(cat .body)"
SID_CRN=$(jget 'j["crn"]'); SID_IAM=$(jget 'j["iam_id"]'); SID=$(jget 'j["id"]')
[ "$(api GET /v1/serviceids/"$SID")" = 200 ] || fail "service id get"
ACCT=$(jget 'j["account_id"]')

# --- create for the caller ----------------------------------------------------------------
[ "$(api POST /v2/resource_keys "{\"name\":\"mine\",\"source\":\"$COS\",\"parameters\":{\"HMAC\":true}}")" = 201 ] || fail "create: $(cat .body)"
cp .body k1.json
K1=$(jf k1.json 'j["guid"]')
AK1=$(jf k1.json 'j["credentials"]["cos_hmac_keys"]["access_key_id"]')
SK1=$(jf k1.json 'j["credentials"]["cos_hmac_keys"]["secret_access_key"]')
[[ $AK1 =~ ^[0-9a-f]{32}$ ]] || fail "access key id '$AK1' is not 32 hex"
[[ $SK1 =~ ^[0-9a-f]{48}$ ]] || fail "secret access key is not 48 hex"
python3 - k1.json "$COS_CRN" "$ACCT" <<'PY' || fail "create shape: $(cat k1.json)"
import json, sys
j = json.load(open(sys.argv[1])); cos_crn, acct = sys.argv[2:]
assert j["id"] == j["crn"] and j["crn"].endswith(":resource-key:" + j["guid"]), j
assert j["url"] == "/v2/resource_keys/" + j["guid"]
assert j["name"] == "mine" and j["account_id"] == acct and j["state"] == "active"
assert j["source_crn"] == cos_crn and j["credentials"]["resource_instance_id"] == cos_crn
assert "iam_serviceid_crn" not in j["credentials"]
assert j["created_by"].startswith("IBMid-"), j["created_by"]
PY
pass "create for the caller: IBM's shape, 32-hex access key id, 48-hex secret"

# --- create for a service ID --------------------------------------------------------------
[ "$(api POST /v2/resource_keys "{\"name\":\"svc\",\"source\":\"$COS\",\"parameters\":{\"HMAC\":true,\"serviceid_crn\":\"$SID_CRN\"}}")" = 201 ] || fail "create for a service ID: $(cat .body)"
cp .body k2.json
K2=$(jf k2.json 'j["guid"]')
AK2=$(jf k2.json 'j["credentials"]["cos_hmac_keys"]["access_key_id"]')
SK2=$(jf k2.json 'j["credentials"]["cos_hmac_keys"]["secret_access_key"]')
[ "$(jf k2.json 'j["credentials"]["iam_serviceid_crn"]')" = "$SID_CRN" ] || fail "iam_serviceid_crn"
[ "$AK1" != "$AK2" ] && [ "$SK1" != "$SK2" ] || fail "two keys share a value"
pass "create for a service ID: credentials.iam_serviceid_crn names it; fresh values"

# --- list / show: no secret -------------------------------------------------------------------
[ "$(api GET /v2/resource_keys)" = 200 ] || fail "list"
[ "$(jget 'j["rows_count"]')" = 2 ] || fail "list count: $(cat .body)"
grep -q secret_access_key .body && fail "list shows a secret"
grep -qF "$SK1" .body && fail "list shows the secret value"
[ "$(api GET "/v2/resource_keys?source=$COS")" = 200 ] && [ "$(jget 'j["rows_count"]')" = 2 ] || fail "list ?source=cos"
[ "$(api GET "/v2/resource_keys?source=$KP")" = 200 ] && [ "$(jget 'j["rows_count"]')" = 0 ] || fail "list ?source=kms"
[ "$(api GET "/v2/resource_keys/$K1")" = 200 ] || fail "show"
[ "$(jget 'j["credentials"]["cos_hmac_keys"]["access_key_id"]')" = "$AK1" ] || fail "show: key id"
[ "$(jget '"secret_access_key" in j["credentials"]["cos_hmac_keys"]')" = False ] || fail "show gives the secret"
pass "list (also by source) and show without the secret"

# --- refused: status, reason, nothing created --------------------------------------------------
refuse() { # STATUS REASON BODY
	local st
	st=$(api POST /v2/resource_keys "$3")
	[ "$st" = "$1" ] || fail "expected $1, got $st for $3: $(cat .body)"
	grep -q "\"$2\"" .body || fail "expected reason $2 for $3: $(cat .body)"
	grep -q secret_access_key .body && fail "a refusal carries a secret"
	[ "$(nkeys)" = 2 ] || fail "a refused create left a key: $3"
}
OTHER_GUID=$(python3 -c 'import uuid; print(uuid.uuid4())')
refuse 400 INVALID_SOURCE "{\"name\":\"x\",\"source\":\"$KP\",\"parameters\":{\"HMAC\":true}}"
refuse 404 SOURCE_NOT_FOUND "{\"name\":\"x\",\"source\":\"$OTHER_GUID\",\"parameters\":{\"HMAC\":true}}"
refuse 404 SERVICEID_NOT_FOUND "{\"name\":\"x\",\"source\":\"$COS\",\"parameters\":{\"HMAC\":true,\"serviceid_crn\":\"crn:v1:sealvm:local:iam-identity::a/$ACCT::serviceid:ServiceId-$OTHER_GUID\"}}"
refuse 400 HMAC_REQUIRED "{\"name\":\"x\",\"source\":\"$COS\"}"
refuse 400 HMAC_REQUIRED "{\"name\":\"x\",\"source\":\"$COS\",\"parameters\":{\"HMAC\":false}}"
refuse 400 PROPERTY_MISSING "{\"source\":\"$COS\",\"parameters\":{\"HMAC\":true}}"
refuse 400 PROPERTY_MISSING "{\"name\":\"x\",\"parameters\":{\"HMAC\":true}}"
refuse 400 INVALID_FIELD "{\"name\":\"x\",\"source\":7,\"parameters\":{\"HMAC\":true}}"
refuse 400 INVALID_FIELD "{\"name\":\"x\",\"source\":\"$COS\",\"parameters\":[]}"
refuse 400 INVALID_BODY '[1]'
[ "$(api GET "/v2/resource_keys/$OTHER_GUID")" = 404 ] || fail "show of an unknown key"
[ "$(api DELETE "/v2/resource_keys/$OTHER_GUID")" = 404 ] || fail "delete of an unknown key"
pass "kms instance 400 INVALID_SOURCE, unknown 404 SOURCE_NOT_FOUND / SERVICEID_NOT_FOUND, bad bodies 400"

# --- another account's instance and service ID: not found -----------------------------------------
stop_daemon
ACCT_B=$(python3 -c 'import uuid; print(uuid.uuid4().hex)')
read -r COS_B SID_B_CRN < <(python3 - data/sealvm.db "$ACCT" "$ACCT_B" "$COS" "$SID_IAM" <<'PY'
import sqlite3, sys, uuid
db, a, b, cos, siam = sys.argv[1:]
c = sqlite3.connect(db)
g = str(uuid.uuid4())
row = list(c.execute("SELECT guid, crn, account_id, name, resource_id, region, state, created_at FROM rc_instances WHERE guid = ?", (cos,)).fetchone())
row[0] = g; row[1] = row[1].replace(a, b).replace(cos, g); row[2] = b
c.execute("INSERT INTO rc_instances VALUES (?,?,?,?,?,?,?,?)", row)
# a service ID of account B: a copy of the caller's (foreign keys are not enforced here)
cur = c.execute("SELECT * FROM iam_service_ids WHERE iam_id = ?", (siam,))
cols = [d[0] for d in cur.description]; s = dict(zip(cols, cur.fetchone()))
u = str(uuid.uuid4()); old = s["id"].split("ServiceId-")[1]
for k in ("id", "iam_id", "crn"):
    s[k] = s[k].replace(old, u).replace(a, b)
s["account_id"] = b
c.execute(f"INSERT INTO iam_service_ids ({','.join(s)}) VALUES ({','.join('?' * len(s))})", list(s.values()))
c.commit()
print(g, s["crn"])
PY
)
start_daemon data daemon2.log
TOK=$(token owner.key)
refuse 404 SOURCE_NOT_FOUND "{\"name\":\"x\",\"source\":\"$COS_B\",\"parameters\":{\"HMAC\":true}}"
refuse 404 SERVICEID_NOT_FOUND "{\"name\":\"x\",\"source\":\"$COS\",\"parameters\":{\"HMAC\":true,\"serviceid_crn\":\"$SID_B_CRN\"}}"
pass "an instance or a service ID of another account: 404, nothing created"

# --- not the owner: the role decides; acting as a service ID needs what an API key of it needs ---
principal() { # NAME ROLE -> a token file for a new service ID with ROLE on resource-controller
	[ "$(api POST /v1/serviceids "{\"name\":\"$1\"}")" = 201 ] || fail "service id $1"
	local siam; siam=$(jget 'j["iam_id"]')
	[ "$(api POST /v1/policies "{\"type\":\"access\",\"subjects\":[{\"attributes\":[{\"name\":\"iam_id\",\"value\":\"$siam\"}]}],\"roles\":[{\"role_id\":\"crn:v1:bluemix:public:iam::::role:$2\"}],\"resources\":[{\"attributes\":[{\"name\":\"accountId\",\"value\":\"$ACCT\"},{\"name\":\"serviceName\",\"value\":\"resource-controller\"}]}]}")" = 201 ] || fail "policy: $(cat .body)"
	[ "$(api POST /v1/apikeys "{\"name\":\"k\",\"iam_id\":\"$siam\"}")" = 201 ] || fail "api key"
	(umask 077; python3 -c "import json,sys; sys.stdout.write(json.load(open('$T/.body'))['apikey'])" >"$1.key")
}
OWNER_TOK=$TOK
principal hmac-viewer Viewer
principal hmac-editor Editor
VIEWER_TOK=$(token hmac-viewer.key); EDITOR_TOK=$(token hmac-editor.key)
TOK=$VIEWER_TOK
[ "$(api GET /v2/resource_keys)" = 200 ] || fail "viewer list"
[ "$(api POST /v2/resource_keys "{\"name\":\"v\",\"source\":\"$COS\",\"parameters\":{\"HMAC\":true}}")" = 403 ] || fail "viewer create: $(cat .body)"
grep -q resource-controller.key.create .body || fail "403 does not name the action: $(cat .body)"
[ "$(api DELETE "/v2/resource_keys/$K1")" = 403 ] || fail "viewer delete"
TOK=$EDITOR_TOK
[ "$(api POST /v2/resource_keys "{\"name\":\"e\",\"source\":\"$COS\",\"parameters\":{\"HMAC\":true,\"serviceid_crn\":\"$SID_CRN\"}}")" = 403 ] || fail "editor acting as another service ID: $(cat .body)"
grep -q iam-identity.apikey.create .body || fail "403 does not name iam-identity.apikey.create: $(cat .body)"
TOK=$OWNER_TOK; [ "$(nkeys)" = 2 ] || fail "a refused create left a key"; TOK=$EDITOR_TOK
[ "$(api POST /v2/resource_keys "{\"name\":\"e\",\"source\":\"$COS\",\"parameters\":{\"HMAC\":true}}")" = 201 ] || fail "editor create: $(cat .body)"
EK=$(jget 'j["guid"]')
[[ "$(jget 'j["created_by"]')" == iam-ServiceId-* ]] || fail "editor's key: created_by $(jget 'j["created_by"]')"
[ "$(api DELETE "/v2/resource_keys/$EK")" = 204 ] || fail "editor delete"
TOK=$OWNER_TOK
pass "Viewer reads only (403 naming the action); Editor creates and deletes keys acting as itself, not as another service ID (403 iam-identity.apikey.create)"

# --- a request signed by botocore with the credentials verifies (sigv4 + rc_hmac_lookup) ------------
HMAC_PEER=${HMAC_PEER:-$(dirname "$SEALVM")/tests/integration/hmac_peer}
BOTO=no
if [ -x "$HMAC_PEER" ] && /usr/bin/python3 -c 'import botocore' 2>/dev/null; then BOTO=yes; fi
sign() { # ACCESS_KEY_ID SECRET OUT — a GET botocore signs, as the S3 listener would receive it
	/usr/bin/python3 - "$1" "$3" <<'PY' 3<<<"$2"
import json, os, sys
from urllib.parse import urlsplit
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
ak, out = sys.argv[1:]
sk = os.fdopen(3).read().strip()  # the secret comes on a descriptor, never in argv
url = "http://127.0.0.1:8443/bucket-1/some/object.txt?versionId=1"
r = AWSRequest(method="GET", url=url, headers={"Host": "127.0.0.1:8443"})
S3SigV4Auth(Credentials(ak, sk), "s3", "us-south").add_auth(r)
u = urlsplit(url)
json.dump({"method": "GET", "path": u.path, "query": u.query,
           "headers": [[k, v] for k, v in r.headers.items()]}, open(out, "w"))
PY
}
if [ $BOTO = yes ]; then
	sign "$AK1" "$SK1" req1.json
	sign "$AK2" "$SK2" req2.json
	# the last character changed (to 1 if it is 0: "replace with 0" would keep one secret in 16)
	last=0; [ "${SK1:47:1}" = 0 ] && last=1
	sign "$AK1" "${SK1:0:47}$last" bad.json
	grep -qF "$SK1" req1.json && fail "the signed request carries the secret"
	stop_daemon
	"$HMAC_PEER" data req1.json >peer1.out || fail "caller's key: $(cat peer1.out)"
	OWNER_IAM=$(jf k1.json 'j["created_by"]')
	[ "$(cat peer1.out)" = "OK $AK1 $OWNER_IAM $COS" ] || fail "peer: $(cat peer1.out)"
	"$HMAC_PEER" data req2.json >peer2.out || fail "service ID's key: $(cat peer2.out)"
	[ "$(cat peer2.out)" = "OK $AK2 $SID_IAM $COS" ] || fail "peer: $(cat peer2.out)"
	rc=0; "$HMAC_PEER" data bad.json >bad.out || rc=$?
	[ $rc = 1 ] && grep -q "REFUSED SignatureDoesNotMatch" bad.out || fail "wrong secret: $rc $(cat bad.out)"
	start_daemon data daemon3.log
	TOK=$(token owner.key)
	pass "botocore-signed requests verify as the caller and as the service ID; a wrong secret does not"
else
	echo "# skipped the botocore check: no botocore for /usr/bin/python3 or no hmac_peer"
fi

# --- the secret never in clear: data dir, log, audit trail ------------------------------------
[ "$(api GET '/v1/events?limit=1000')" = 200 ] || fail "events: $(cat .body)"
cp .body events.json
grep -q 'resource-controller.resource-key.create' events.json || fail "no create event"
for s in "$SK1" "$SK2"; do
	grep -rqF "$s" data && fail "a secret is in clear in the data dir"
	grep -qF "$s" daemon*.log events.json && fail "a secret is in a log or the audit trail"
done
pass "secrets not in the data dir, the logs or the audit events (which name the key ids)"

# --- delete: gone, and lookups fail at once ---------------------------------------------------------
[ "$(api DELETE "/v2/resource_keys/$K1")" = 204 ] || fail "delete: $(cat .body)"
[ "$(api GET "/v2/resource_keys/$K1")" = 404 ] || fail "deleted key still shown"
[ "$(api DELETE "/v2/resource_keys/$K1")" = 404 ] || fail "delete twice"
[ "$(nkeys)" = 1 ] || fail "list after delete"
[ "$(api GET '/v1/events?action=resource-controller.resource-key.delete')" = 200 ] || fail "events"
grep -qF "$AK1" .body || fail "no delete event naming the key id"
# deleting the service ID makes its key stop verifying too
[ "$(api DELETE "/v1/serviceids/$SID")" = 204 ] || fail "service id delete: $(cat .body)"
if [ $BOTO = yes ]; then
	stop_daemon
	rc=0; "$HMAC_PEER" data req1.json >peer1.out || rc=$?
	[ $rc = 1 ] && grep -q "REFUSED InvalidAccessKeyId" peer1.out || fail "deleted key: $rc $(cat peer1.out)"
	rc=0; "$HMAC_PEER" data req2.json >peer2.out || rc=$?
	[ $rc = 1 ] && grep -q "REFUSED InvalidAccessKeyId" peer2.out || fail "deleted service ID: $rc $(cat peer2.out)"
	start_daemon data daemon4.log
	TOK=$(token owner.key)
fi
pass "delete: 204, then 404; a deleted key or service ID no longer verifies"

# --- the CLI ----------------------------------------------------------------------------------
S login --endpoint "$URL" --apikey-file owner.key >/dev/null
S iam hmac create --instance "$COS" --name cli-key >c1.out 2>c1.err
[ "$(wc -l <c1.out)" = 2 ] || fail "create: two lines on stdout: $(cat c1.out)"
CAK=$(sed -n 's/^access_key_id: \([0-9a-f]\{32\}\)$/\1/p' c1.out)
CSK=$(sed -n 's/^secret_access_key: \([0-9a-f]\{48\}\)$/\1/p' c1.out)
[ -n "$CAK" ] && [ -n "$CSK" ] || fail "create output: $(cat c1.out)"
grep -q "shown only once" c1.err || fail "create: no notice on stderr"
grep -qF "$CSK" c1.err && fail "the secret is on stderr"
CG=$(sed -n 's/^created HMAC key \([^ ]*\) .*/\1/p' c1.err)
S iam service-id create cli-s3 --json >csid.json
S iam hmac create --instance "$COS" --service-id "$(jf csid.json 'j["id"]')" --json >c2.json
python3 - c2.json csid.json <<'PY' || fail "create --service-id --json: $(cat c2.json)"
import json, sys
j = json.load(open(sys.argv[1])); s = json.load(open(sys.argv[2]))
assert len(j["access_key_id"]) == 32 and len(j["secret_access_key"]) == 48, j
assert j["acts_as"] == s["crn"] and j["name"] == "hmac-credentials" and j["guid"], j
PY
CSK2=$(jf c2.json 'j["secret_access_key"]')
S iam hmac list --instance "$COS" >cl.out
head -1 cl.out | grep -q "^GUID  *NAME  *ACCESS_KEY_ID  *ACTS_AS" || fail "list header: $(cat cl.out)"
grep -q "$CAK" cl.out && grep -q "$(jf csid.json 'j["crn"]')" cl.out || fail "list: $(cat cl.out)"
S iam hmac show "$CG" >cs.out
grep -q "^access_key_id: *$CAK$" cs.out || fail "show: $(cat cs.out)"
S iam hmac show "$CG" --json >cs.json
for f in cl.out cs.out cs.json; do grep -qE "$CSK|$CSK2|secret_access_key" $f && fail "$f shows a secret"; done
expect_usage S iam hmac create --name x
expect_fail INVALID_SOURCE S iam hmac create --instance "$KP"
expect_fail SOURCE_NOT_FOUND S iam hmac create --instance "$OTHER_GUID"
expect_fail SERVICEID_NOT_FOUND S iam hmac create --instance "$COS" --service-id "crn:v1:x"
S iam hmac delete "$CG" | grep -q "deleted HMAC key $CG" || fail "delete"
expect_fail NOT_FOUND S iam hmac show "$CG"
[ "$(S iam hmac list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["rows_count"])')" = 2 ] || fail "list after CLI delete"
for s in "$CSK" "$CSK2"; do
	grep -rqF "$s" data "$XDG_CONFIG_HOME" daemon*.log && fail "a CLI-made secret is in clear on disk or in a log"
done
pass "CLI: hmac create (flat, stdout only; --service-id, --json), list, show without secret, errors, delete"
stop_daemon
