#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The sealvm CLI against a real sealvmd: login state, iam service-id/api-key/policy/
# authorization, events list/verify, global options and environment, token refresh, errors.
. "$(dirname "$0")/lib.sh"
need curl python3
[ -x "$SEALVMD" ] || fail "no sealvmd at $SEALVMD"
trap 'rc=$?; [ -n "${DPID:-}" ] && kill -9 $DPID 2>/dev/null; rm -rf "$T"; exit $rc' EXIT
export XDG_CONFIG_HOME="$T/config"
unset SEALVM_ENDPOINT SEALVM_TOKEN SEALVM_APIKEY_FILE
STATE=$XDG_CONFIG_HOME/sealvm/login.json
S() { "$SEALVM" "$@"; }
jf() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }

"$SEALVMD" init --data-dir data --owner-key-file owner.key 2>init.log
start_daemon data daemon.log

# --- login ------------------------------------------------------------------------------------
S login --endpoint "$URL" --apikey-file owner.key >login.out
[ -f "$STATE" ] || fail "no login state"
[ "$(stat -c %a "$STATE")" = 600 ] || fail "state file mode $(stat -c %a "$STATE")"
[ "$(stat -c %a "$XDG_CONFIG_HOME/sealvm")" = 700 ] || fail "state dir mode"
grep -qF "$(cat owner.key)" "$STATE" && fail "the API key value is in the state file"
grep -q "$T/owner.key" "$STATE" || fail "the state file does not name the key file"
pass "login: state 0600 in a 0700 dir, the key file's path and no key value"

# --- service IDs ------------------------------------------------------------------------------
S iam service-id create cli-sid --description "made by the CLI" --json >sid.json
SID=$(jf sid.json 'j["id"]'); SIAM=$(jf sid.json 'j["iam_id"]')
S iam service-id list >list.out
grep -q "$SID" list.out && grep -q "cli-sid" list.out || fail "list: $(cat list.out)"
head -1 list.out | grep -q "^ID  *NAME" || fail "list header"
S iam service-id show "$SID" | grep -q "^name: *cli-sid$" || fail "show"
S iam service-id update "$SID" --name cli-sid2 --description new >/dev/null
S iam service-id show "$SID" --json >show.json
[ "$(jf show.json "j['name'] + ' ' + j['description']")" = "cli-sid2 new" ] || fail "update: $(cat show.json)"
S iam service-id lock "$SID" >/dev/null
[ "$(S iam service-id show "$SID" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["locked"])')" = True ] || fail "lock"
S iam service-id unlock "$SID" >/dev/null
[ "$(S iam service-id show "$SID" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["locked"])')" = False ] || fail "unlock"
S iam service-id create doomed --json >doomed.json
S iam service-id delete "$(jf doomed.json 'j["id"]')" | grep -q deleted || fail "delete"
expect_fail SERVICEID_NOT_FOUND S iam service-id show "$(jf doomed.json 'j["id"]')"
grep -q "request id" .err || fail "no request id in the message"
pass "service-id create/list/show/update/lock/unlock/delete"

# --- API keys ---------------------------------------------------------------------------------
S iam api-key create cli-key --iam-id "$SIAM" --out sid.key --json >key.json
[ "$(stat -c %a sid.key)" = 600 ] || fail "key file mode"
[ "$(jf key.json "'apikey' in j")" = False ] || fail "--out: the value is also on stdout"
grep -qF "$(cat sid.key)" key.json && fail "--out: the value is on stdout"
KID=$(jf key.json 'j["id"]')
[ -n "$(token sid.key)" ] || fail "the new key gives no token"
expect_fail OUTPUT_EXISTS S iam api-key create again --iam-id "$SIAM" --out sid.key
S iam api-key list --iam-id "$SIAM" >klist.out
grep -q "$KID" klist.out || fail "api-key list"
S iam api-key show "$KID" --json >kshow.json
python3 -c "import json; j=json.load(open('kshow.json')); assert 'apikey' not in j" || fail "show gives the value"
S iam api-key create tmp --iam-id "$SIAM" >tmp.key 2>tmp.err
[ "$(wc -l <tmp.key)" = 1 ] || fail "value to stdout: one line"
TKID=$(sed -n 's/created API key \([^ ]*\) .*/\1/p' tmp.err)
S iam api-key lock "$TKID" >/dev/null && S iam api-key unlock "$TKID" >/dev/null || fail "key lock/unlock"
S iam api-key delete "$TKID" >/dev/null || fail "key delete"
pass "api-key create --out (0600, O_EXCL, value works), list, show without value, lock/unlock/delete"

# --- 403 for a service ID without policies (its own token, from the environment) ----------------
expect_fail iam-identity.serviceid.list env SEALVM_ENDPOINT="$URL" SEALVM_APIKEY_FILE=sid.key "$SEALVM" iam service-id list
grep -q "HTTP 403" .err || fail "403 not reported: $(cat .err)"
pass "403 for a service ID without policies names the action"

# --- policies and authorizations --------------------------------------------------------------
S iam policy create --subject "$SIAM" --role Reader --service kms --json >pol.json
PID=$(jf pol.json 'j["id"]')
[ "$(jf pol.json 'j["roles"][0]["role_id"]')" = crn:v1:bluemix:public:iam::::serviceRole:Reader ] || fail "service role CRN"
S iam policy create --subject "$SIAM" --role Viewer --service kms --json >pol2.json
[ "$(jf pol2.json 'j["roles"][0]["role_id"]')" = crn:v1:bluemix:public:iam::::role:Viewer ] || fail "platform role CRN"
S iam policy list --iam-id "$SIAM" >plist.out
grep -q "$PID" plist.out || fail "policy list"
S iam policy show "$PID" | grep -q "^roles: *Reader" || fail "policy show"
expect_fail INVALID_ROLE S iam policy create --subject "$SIAM" --role NoSuchRole --service kms
S iam policy delete "$PID" >/dev/null
S iam policy delete "$(jf pol2.json 'j["id"]')" >/dev/null
S iam policy list --iam-id "$SIAM" --json >plist.json
[ "$(jf plist.json 'len(j["policies"])')" = 0 ] || fail "policy delete"
S iam authorization create --source block-storage --target kms --role Reader --json >az.json
AZ=$(jf az.json 'j["id"]')
[ "$(jf az.json 'j["type"]')" = authorization ] || fail "authorization type"
S iam authorization list >azlist.out
grep -q "$AZ" azlist.out && grep -q "serviceName=block-storage" azlist.out || fail "authorization list"
S iam authorization delete "$AZ" >/dev/null
S iam authorization list | grep -q "$AZ" && fail "authorization delete"
pass "policy create (short roles map to CRNs)/list/show/delete; authorization create/list/delete"

# --- events -----------------------------------------------------------------------------------
S events list --action iam-identity.account-serviceid.create --all --json >ev.json
[ "$(jf ev.json 'sum(e["outcome"]=="success" for e in j["events"])')" = 2 ] || fail "events list: $(jf ev.json 'len(j["events"])')"
S events list --limit 1000 --json >ev1000.json
S events list --limit 2 --all --json >evall.json
[ "$(jf evall.json 'len(j["events"])')" -ge "$(jf ev1000.json 'len(j["events"])')" ] || fail "--all does not follow next"
S events list --action iam-am.policy.create >ev.out
head -1 ev.out | grep -q "^TIME  *ACTION  *OUTCOME" || fail "events columns"
[ "$(grep -c iam-am.policy.create ev.out)" = 4 ] || fail "policy create events: $(cat ev.out)" # 3 ok + 1 bad role
S events verify >verify.out || fail "verify: $(cat verify.out)"
grep -q "^ok:" verify.out || fail "verify output"
S events checkpoint --out cp.jws 2>/dev/null
[ "$(wc -l <cp.jws)" = 1 ] || fail "checkpoint file"
S events checkpoint --out cp.jws 2>/dev/null && fail "checkpoint --out overwrote a file"
S iam service-id create after-cp >/dev/null
S events verify --checkpoint cp.jws >verify-cp.out || fail "verify --checkpoint: $(cat verify-cp.out)"
grep -q "passes through the checkpoint" verify-cp.out || fail "verify --checkpoint output"
printf 'not a checkpoint' >bad.jws
expect_fail INVALID_CHECKPOINT S events verify --checkpoint bad.jws
expect_usage S events list --outcome maybe
expect_usage S events list --limit 0
pass "events list (filters, --all follows next, columns), verify (exit 0), checkpoint and verify --checkpoint"

# --- resource instances ----------------------------------------------------------------------------
S resource instance create my-keys --service kms --json >ri.json
RI=$(jf ri.json 'j["guid"]')
[ "$(jf ri.json 'j["resource_id"]')" = kms ] || fail "instance service"
S resource instance list >ri.out
grep -q "$RI" ri.out && head -1 ri.out | grep -q "^GUID" || fail "instance list: $(cat ri.out)"
S resource instance show "$RI" | grep -q "^crn: *crn:v1:" || fail "instance show"
expect_fail INVALID_RESOURCE_ID S resource instance create x --service nosuch
expect_fail INVALID_TARGET S resource instance create x --service kms --region eu-de
expect_usage S resource instance create x
S resource instance delete "$RI" | grep -q "deleted instance $RI" || fail "instance delete"
expect_fail "404" S resource instance show "$RI"
pass "resource instance create/list/show/delete; bad service or region refused"

# --- global options and environment without login ------------------------------------------------
S logout
[ ! -e "$STATE" ] || fail "logout left the state"
expect_fail NOT_LOGGED_IN S iam service-id list
S --endpoint "$URL" --apikey-file owner.key iam service-id list | grep -q "$SID" || fail "global options"
SEALVM_ENDPOINT="$URL" SEALVM_APIKEY_FILE="$T/owner.key" "$SEALVM" iam service-id list | grep -q "$SID" || fail "environment"
token owner.key | tr -d '\n' >owner.tok
S --endpoint="$URL" --token-file owner.tok iam service-id show "$SID" >/dev/null || fail "--token-file"
SEALVM_ENDPOINT="$URL" SEALVM_TOKEN="$(cat owner.tok)" "$SEALVM" events verify >/dev/null || fail "SEALVM_TOKEN"
[ ! -e "$STATE" ] || fail "options without login wrote a state"
# flag beats environment: a bad key file in the environment is not used
SEALVM_ENDPOINT="$URL" SEALVM_APIKEY_FILE=/nonexistent "$SEALVM" --apikey-file owner.key iam service-id list >/dev/null || fail "flag > environment"
pass "--endpoint/--apikey-file/--token-file and SEALVM_* work without login; flag > environment"

# --- token refresh: an expired stored token is replaced ------------------------------------------
S login --endpoint "$URL" --apikey-file owner.key >/dev/null
old=$(jf "$STATE" 'j["token"]')
sleep 1.1 # a new token must differ in iat
python3 - "$STATE" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
j["expiration"] = 1000
json.dump(j, open(sys.argv[1], "w"))
PY
S iam service-id show "$SID" >/dev/null || fail "command after expiry"
[ "$(jf "$STATE" 'j["token"]')" != "$old" ] || fail "the expired token was not replaced"
[ "$(jf "$STATE" 'j["expiration"] > 1000')" = True ] || fail "expiry not renewed"
[ "$(stat -c %a "$STATE")" = 600 ] || fail "state mode after refresh"
# the environment overrides the login state
SEALVM_ENDPOINT=http://127.0.0.1:1 expect_fail "http://127.0.0.1:1" "$SEALVM" --apikey-file owner.key iam service-id list
pass "an expired stored token is renewed from the key file; the state stays 0600"

# --- errors -----------------------------------------------------------------------------------
expect_fail "http://127.0.0.1:1/" S --endpoint http://127.0.0.1:1 --apikey-file owner.key iam service-id list
grep -q CONNECT_FAILED .err || fail "wrong endpoint reason"
expect_fail "FILE_UNREADABLE\|KEY_FILE\|cannot read" S --endpoint "$URL" --apikey-file nonexistent.key iam service-id list
expect_usage S iam
expect_usage S iam service-id nosuch
expect_usage S iam service-id show
expect_usage S iam service-id show a b
expect_usage S iam service-id update "$SID"
expect_usage S iam api-key create k
expect_usage S iam policy create --subject "$SIAM"
expect_usage S iam policy list --type other
expect_usage S iam authorization create --source images
expect_usage S login --endpoint "$URL"
expect_usage S --endpoint
expect_usage S --apikey x iam service-id list
expect_usage S iam service-id list --apikey x
expect_usage S --endpoint ftp://x iam service-id list
pass "wrong endpoint (exit 1, names the URL), unreadable key file, usage errors exit 2"

# --- no secret in argv: no option takes one ----------------------------------------------------
for h in "--help" "iam --help" "login --help" "iam api-key create --help" "iam service-id create --help" \
	"iam policy create --help" "iam authorization create --help" "events list --help"; do
	# shellcheck disable=SC2086
	S $h >help.out
	grep -Eq -- '--(apikey|token|key|password|secret)( |=)' help.out && fail "an option takes a secret: $h"
done
S iam service-id list --help | grep -q "^Usage: sealvm iam service-id list" || fail "leaf help"
pass "help at every level; no option takes a secret value"

stop_daemon
grep -qF "$(cat owner.key)" daemon.log && fail "key in the daemon log"
pass "sealvmd stopped cleanly"
