#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# demo.sh BUILD_DIR — the image part of the sealvm flow on a disk it builds itself:
# generate a DEK, encrypt a dynamic VHD into LUKS in one pass, inspect, verify
# (and let cryptsetup check it), decrypt, compare with the original; then start sealvmd,
# create a service ID, an API key, a policy and an authorization; create a KMS instance and a
# root key, wrap a generated DEK, encrypt the image with it, unwrap the WDEK and verify the
# image with the unwrapped key; create a regional bucket encrypted under the root key, upload
# the encrypted image with progress and read its header back by ranged GET; show and verify
# the audit trail, stop the daemon.
set -euo pipefail
build=${1:-build}
sealvm="$(cd "$build" && pwd)/sealvm"
sealvmd="$(cd "$build" && pwd)/sealvmd"
out=${DEMO_DIR:-$(pwd)/demo-out}
rm -rf "$out"
mkdir -p "$out"
cd "$out"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "1. A small cloud-init-style OS disk: an MBR partition table and an ext4 partition"
mkdir -p rootfs/etc/cloud
echo "sealvm demo guest" >rootfs/etc/motd
printf '#cloud-config\nhostname: demo\n' >rootfs/etc/cloud/cloud.cfg
truncate -s 64M disk.raw
if command -v sfdisk >/dev/null && command -v mke2fs >/dev/null; then
	echo 'label: dos
start=2048, type=83, bootable' | sfdisk -q disk.raw
	mke2fs -q -t ext4 -d rootfs -E offset=$((2048 * 512)) disk.raw $(((64 * 1024 - 1024) ))k
else
	head -c 8M /dev/urandom | dd of=disk.raw conv=notrunc status=none
	printf '\x55\xaa' | dd of=disk.raw bs=1 seek=510 conv=notrunc status=none
fi
run qemu-img convert -f raw -O vpc -o subformat=dynamic,force_size=on disk.raw disk.vhd
ls -l disk.raw disk.vhd

step "2. A data encryption key (DEK): 32 random bytes as base64 text, mode 0600"
run "$sealvm" dek generate --out demo.dek
ls -l demo.dek

step "3. Encrypt the dynamic VHD straight into a LUKS1 image (one pass, no root)"
run "$sealvm" image encrypt --dek-file demo.dek disk.vhd disk.luks

step "4. Inspect it"
run "$sealvm" image inspect disk.luks

step "5. Verify that the DEK opens it (header only) — and that another key does not"
run "$sealvm" image verify --dek-file demo.dek disk.luks
"$sealvm" dek generate --out other.dek
printf '$ %s\n' "$sealvm image verify --dek-file other.dek disk.luks"
if "$sealvm" image verify --dek-file other.dek disk.luks; then
	echo "unexpected: another key opened the image" >&2
	exit 1
fi
if command -v cryptsetup >/dev/null; then
	run cryptsetup open --test-passphrase --key-file demo.dek disk.luks && echo "cryptsetup: the DEK opens keyslot 0"
fi

step "6. Decrypt back to raw and compare with the original"
run "$sealvm" image decrypt --dek-file demo.dek disk.luks roundtrip.raw
run cmp disk.raw roundtrip.raw
echo "identical: $(sha256sum <disk.raw | cut -c1-16)… = $(sha256sum <roundtrip.raw | cut -c1-16)…"


step "7. The daemon: a fresh data dir, the account owner's API key shown once"
run "$sealvmd" init --data-dir data --owner-key-file owner.key
ls -la data owner.key
"$sealvmd" --data-dir data --listen 127.0.0.1:0 --s3-listen 127.0.0.1:0 --no-access-log >daemon.log 2>&1 &
dpid=$!
trap 'kill $dpid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
	port=$(sed -n 's/.*serving on .* (port \([0-9]*\)).*/\1/p' daemon.log | head -1)
	[ -n "$port" ] && break
	sleep 0.1
done
[ -n "$port" ] || { cat daemon.log; exit 1; }
url="http://127.0.0.1:$port"
echo "sealvmd is serving on $url"
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
tok=$(curl -sf -X POST "$url/identity/token" --data-urlencode "grant_type=urn:ibm:params:oauth:grant-type:apikey" \
	--data-urlencode "apikey@owner.key" | json 'd["access_token"]')
acct=$(echo "$tok" | cut -d. -f2 | tr '_-' '/+' | python3 -c 'import base64,sys,json; s=sys.stdin.read().strip(); print(json.loads(base64.b64decode(s + "=" * (-len(s) % 4)))["account"]["bss"])')
echo "token for account $acct (ES256, expires in 1 hour)"
call() { curl -sf -H "Authorization: Bearer $tok" -H 'Content-Type: application/json' "$@"; }

step "8. A service ID for the image importer, an API key for it, a policy and an authorization"
sid=$(call -X POST "$url/v1/serviceids" -d '{"name":"image-importer","description":"reads my images"}')
echo "$sid" | json '"service ID: " + d["id"]'
siam=$(echo "$sid" | json 'd["iam_id"]')
call -X POST "$url/v1/apikeys" -d "{\"name\":\"importer-key\",\"iam_id\":\"$siam\"}" | json '"API key: " + d["id"] + " (value shown once, stored only as a keyed hash)"'
call -X POST "$url/v1/policies" -d "{\"type\":\"access\",\"subjects\":[{\"attributes\":[{\"name\":\"iam_id\",\"value\":\"$siam\"}]}],\"roles\":[{\"role_id\":\"crn:v1:bluemix:public:iam::::serviceRole:Reader\"}],\"resources\":[{\"attributes\":[{\"name\":\"accountId\",\"value\":\"$acct\"},{\"name\":\"serviceName\",\"value\":\"kms\"}]}]}" | json '"access policy: " + d["id"] + " (Reader on kms)"'
call -X POST "$url/v1/policies" -d "{\"type\":\"authorization\",\"subjects\":[{\"attributes\":[{\"name\":\"accountId\",\"value\":\"$acct\"},{\"name\":\"serviceName\",\"value\":\"block-storage\"}]}],\"roles\":[{\"role_id\":\"crn:v1:bluemix:public:iam::::serviceRole:Reader\"}],\"resources\":[{\"attributes\":[{\"name\":\"accountId\",\"value\":\"$acct\"},{\"name\":\"serviceName\",\"value\":\"kms\"}]}]}" | json '"authorization: " + d["id"] + " (block-storage may use kms as Reader)"'
echo "a request without a token:"
curl -s "$url/v1/serviceids" | json '"  " + d["errorCode"] + ": " + d["errorMessage"]'

step "9. The key service: a KMS instance and a root key generated inside its keystore"
export XDG_CONFIG_HOME="$out/config" # the demo's login state stays in the demo's directory
run "$sealvm" login --endpoint "$url" --apikey-file owner.key
inst=$("$sealvm" resource instance create demo-keys --service kms --json | json 'd["guid"]')
echo "KMS instance: $inst (the bluemix-instance of every key request)"
export SEALVM_KMS_INSTANCE=$inst
run "$sealvm" kms key create demo-root --description "root key of the demo image"
root=$("$sealvm" kms key list --json | json '[k["id"] for k in d["resources"] if k["name"] == "demo-root"][0]')

step "10. Envelope encryption: the root key wraps a new DEK; the image is encrypted with it"
run "$sealvm" kms wrap "$root" --dek-out kms.dek --out kms.wdek
ls -l kms.dek kms.wdek
echo "WDEK (safe to store beside the image): $(cut -c1-48 kms.wdek)…"
run "$sealvm" image encrypt --dek-file kms.dek --no-progress disk.vhd disk-kms.luks

step "11. Forget the DEK; unwrap the WDEK with the root key and verify the image with it"
run rm -f kms.dek
run "$sealvm" kms unwrap "$root" --wdek-file kms.wdek --dek-out unwrapped.dek
run "$sealvm" image verify --dek-file unwrapped.dek disk-kms.luks
if command -v cryptsetup >/dev/null; then
	run cryptsetup open --test-passphrase --key-file unwrapped.dek disk-kms.luks && echo "cryptsetup: the unwrapped DEK opens keyslot 0"
fi
run "$sealvm" image decrypt --dek-file unwrapped.dek --no-progress disk-kms.luks kms-roundtrip.raw
run cmp disk.raw kms-roundtrip.raw
echo "without the root key, the WDEK is useless: another root key cannot unwrap it"
"$sealvm" kms key create other-root >/dev/null
other=$("$sealvm" kms key list --json | json '[k["id"] for k in d["resources"] if k["name"] == "other-root"][0]')
printf '$ %s\n' "$sealvm kms unwrap $other --wdek-file kms.wdek --dek-out nope.dek"
if "$sealvm" kms unwrap "$other" --wdek-file kms.wdek --dek-out nope.dek; then
	echo "unexpected: another root key unwrapped the WDEK" >&2
	exit 1
fi

step "12. Object storage: a regional bucket encrypted under the root key; upload the image, read its header back"
cos=$("$sealvm" resource instance create demo-objects --service cloud-object-storage --json | json 'd["guid"]')
echo "object storage instance: $cos"
export SEALVM_COS_INSTANCE=$cos
call -X POST "$url/v1/policies" -d "{\"type\":\"authorization\",\"subjects\":[{\"attributes\":[{\"name\":\"accountId\",\"value\":\"$acct\"},{\"name\":\"serviceName\",\"value\":\"cloud-object-storage\"}]}],\"roles\":[{\"role_id\":\"crn:v1:bluemix:public:iam::::serviceRole:Reader\"}],\"resources\":[{\"attributes\":[{\"name\":\"accountId\",\"value\":\"$acct\"},{\"name\":\"serviceName\",\"value\":\"kms\"}]}]}" | json '"authorization: " + d["id"] + " (cloud-object-storage may use kms as Reader: server-side encryption)"'
rootcrn=$("$sealvm" kms key list --json | json '[k["crn"] for k in d["resources"] if k["name"] == "demo-root"][0]')
run "$sealvm" cos bucket create demo-images --location us-south-standard --kms-key-crn "$rootcrn"
run "$sealvm" cos put --progress disk-kms.luks cos://us-south/demo-images/disk-kms.luks
run "$sealvm" cos ls cos://us-south/demo-images
run "$sealvm" cos get cos://us-south/demo-images/disk-kms.luks header.bin --range 0-4095 --no-progress
head -c 4096 disk-kms.luks | cmp - header.bin
xxd header.bin | head -2
echo "the ranged GET returned the image's first 4 KiB (its LUKS header), decrypting only those bytes"
if grep -rqa "xts-plain64" data/cos; then
	echo "unexpected: the image's LUKS header is readable in data/cos" >&2
	exit 1
fi
echo "at rest the object is encrypted again under a per-object key wrapped by demo-root: no LUKS header text in data/cos"

step "13. The audit trail (CADF events, hash-chained) and its verification"
call "$url/v1/events?limit=100" | python3 -c '
import json, sys
for e in json.load(sys.stdin)["events"]:
    print("  %s  %-42s %-8s %s" % (e["eventTime"], e["action"], e["outcome"], e.get("initiator", {}).get("id", "-")))'
call "$url/v1/events/verify" | json '"chain: " + ("OK" if d["ok"] else "BROKEN at %d" % d["first_bad_seq"]) + ", %d events" % d["events"]'
kill -TERM $dpid
wait $dpid
trap - EXIT
echo "sealvmd stopped (SIGTERM: in-flight requests finished, exit 0)"

printf '\n\033[1mdemo: the image round trip, the key service (envelope encryption), object storage and the identity + audit services work.\033[0m Files are in %s\n' "$out"
