#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Our LUKS1 output as the real peers see it: cryptsetup reads the header and
# opens the keyslot with the DEK file; QEMU's luks driver decrypts it to the
# very bytes we encrypted; our decrypt agrees; the reported SHA-256 is right.
. "$(dirname "$0")/lib.sh"
need cryptsetup qemu-img sha256sum

mkraw disk.raw 9
mkdek k.dek
"$SEALVM" image encrypt --dek-file k.dek --no-progress --json disk.raw disk.luks >enc.json
pass "encrypt a raw image"

cryptsetup luksDump disk.luks >dump.txt
grep -Eq '^Version:\s+1$' dump.txt || fail "not LUKS1"
grep -Eq '^Cipher name:\s+aes$' dump.txt || fail "cipher"
grep -Eq '^Cipher mode:\s+xts-plain64$' dump.txt || fail "mode"
grep -Eq '^Hash spec:\s+sha256$' dump.txt || fail "hash"
grep -Eq '^Payload offset:\s+4096$' dump.txt || fail "payload offset"
grep -Eq '^MK bits:\s+512$' dump.txt || fail "key size"
grep -Eq '^Key Slot 0: ENABLED$' dump.txt || fail "keyslot 0"
[ "$(grep -c ': ENABLED' dump.txt)" = 1 ] || fail "more than one keyslot"
grep -A4 '^Key Slot 0' dump.txt | grep -Eq 'Iterations:\s+1000$' || fail "PBKDF2 iterations"
pass "cryptsetup luksDump: LUKS1 aes xts-plain64 sha256, payload 4096, 512-bit key, one keyslot"

cryptsetup open --test-passphrase --key-file k.dek disk.luks || fail "cryptsetup cannot open"
"$SEALVM" dek generate --out wrong.dek
if cryptsetup open --test-passphrase --key-file wrong.dek disk.luks 2>/dev/null; then
	fail "cryptsetup opened with a wrong key"
fi
pass "cryptsetup open --test-passphrase --key-file opens it (and not with another key)"

qemu-img convert --object secret,id=s0,file=k.dek \
	--image-opts "driver=luks,key-secret=s0,file.filename=disk.luks" -O raw qemu.raw
same_bytes qemu.raw disk.raw
pass "qemu-img through the luks driver decrypts to the input bytes"

python3 - enc.json disk.luks <<'PY'
import json, sys, hashlib, os
r = json.load(open(sys.argv[1]))
h = hashlib.sha256(open(sys.argv[2], "rb").read()).hexdigest()
assert r["sha256"] == h, (r["sha256"], h)
assert r["virtual_size"] == 9 * 1024 * 1024, r
assert r["output_size"] == os.path.getsize(sys.argv[2]) == 9 * 1024 * 1024 + 2 * 1024 * 1024, r
assert r["input_format"] == "raw", r
assert r["seconds"] > 0 and r["mb_per_s"] > 0, r
PY
"$SEALVM" image encrypt --dek-file k.dek --no-progress disk.raw human.luks >human.txt
for f in "virtual size:" "output size:" "sha256:" "elapsed:"; do
	grep -q "$f" human.txt || fail "report lacks '$f'"
done
grep -q "$(sha256sum human.luks | cut -c1-64)" human.txt || fail "human report sha256"
pass "the report: virtual size, output size, SHA-256 of the output, time and MB/s"

"$SEALVM" image verify --dek-file k.dek disk.luks >/dev/null
"$SEALVM" image decrypt --dek-file k.dek --no-progress disk.luks back.raw >/dev/null
same_bytes back.raw disk.raw
pass "our verify and decrypt round-trip"

"$SEALVM" image inspect --json disk.luks >insp.json
python3 - insp.json "$(cryptsetup luksUUID disk.luks)" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
assert j["format"] == "luks" and j["virtual_size"] == 9 * 1024 * 1024, j
l = j["luks"]
assert (l["version"], l["cipher"], l["cipher_mode"], l["hash"]) == (1, "aes", "xts-plain64", "sha256"), l
assert l["payload_offset"] == 4096 * 512 and l["key_bits"] == 512 and l["uuid"] == sys.argv[2], l
assert [s["slot"] for s in l["keyslots"]] == [0], l
PY
pass "inspect --json reports version, cipher, mode, hash, offset, key size, UUID, keyslots"

# Several thread counts and a size that is no multiple of the pipeline's chunk.
head -c $((5 * 1024 * 1024 + 3 * 512)) /dev/urandom >odd.raw
printf '\x55\xaa' | dd of=odd.raw bs=1 seek=510 conv=notrunc status=none
for th in 1 3; do
	"$SEALVM" image encrypt --dek-file k.dek --threads $th --pbkdf-iterations 2000 odd.raw odd$th.luks >/dev/null
	"$SEALVM" image decrypt --dek-file k.dek --threads $th odd$th.luks odd$th.raw >/dev/null
	same_bytes odd$th.raw odd.raw
done
cryptsetup luksDump odd1.luks | grep -A4 '^Key Slot 0' | grep -Eq 'Iterations:\s+2000$' || fail "--pbkdf-iterations"
pass "--threads 1 and 3, --pbkdf-iterations, sizes that are no multiple of the chunk"
