#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Fixed and dynamic VHD and qcow2 (v2, v3, compressed) made by qemu-img encrypt
# to the same plaintext as their raw source, detected from content or named.
. "$(dirname "$0")/lib.sh"
need qemu-img cryptsetup python3

mkraw disk.raw 12
# a compressible stretch, so that qemu-img -c really stores compressed clusters
{ yes "sealvm compressible text" || true; } | head -c 3M | dd of=disk.raw bs=1M seek=4 conv=notrunc status=none
mkdek k.dek

qemu-img convert -f raw -O vpc -o subformat=fixed,force_size=on disk.raw fixed.vhd
qemu-img convert -f raw -O vpc -o subformat=dynamic,force_size=on disk.raw dyn.vhd
qemu-img convert -f raw -O qcow2 -o compat=0.10 disk.raw v2.qcow2
qemu-img convert -f raw -O qcow2 -o compat=1.1 disk.raw v3.qcow2
qemu-img convert -f raw -O qcow2 -c disk.raw comp.qcow2
qemu-img convert -f raw -O qcow2 -o cluster_size=512 disk.raw small.qcow2
qemu-img convert -f raw -O qcow2 -o cluster_size=2M disk.raw big.qcow2

for img in fixed.vhd dyn.vhd v2.qcow2 v3.qcow2 comp.qcow2 small.qcow2 big.qcow2; do
	"$SEALVM" image encrypt --dek-file k.dek --json "$img" "$img.luks" >"$img.json"
	cryptsetup open --test-passphrase --key-file k.dek "$img.luks" || fail "cryptsetup: $img.luks"
	"$SEALVM" image decrypt --dek-file k.dek "$img.luks" "$img.raw" >/dev/null
	same_bytes "$img.raw" disk.raw
done
pass "VHD fixed/dynamic and qcow2 v2/v3/compressed/512 B and 2 MiB clusters decrypt to the raw source"

python3 - <<'PY'
import json
want = {"fixed.vhd": "vhd-fixed", "dyn.vhd": "vhd-dynamic", "v2.qcow2": "qcow2",
        "v3.qcow2": "qcow2", "comp.qcow2": "qcow2"}
for f, fmt in want.items():
    j = json.load(open(f + ".json"))
    assert j["input_format"] == fmt, (f, j)
    assert j["virtual_size"] == 12 << 20, (f, j)
PY
pass "the report names the detected format and the virtual size"

# Explicit --in-format works, and a wrong one is refused naming both.
"$SEALVM" image encrypt --dek-file k.dek --in-format vhd dyn.vhd named.luks >/dev/null
"$SEALVM" image encrypt --dek-file k.dek --in-format raw disk.raw named2.luks >/dev/null
expect_fail FORMAT_MISMATCH "$SEALVM" image encrypt --dek-file k.dek --in-format qcow2 dyn.vhd x.luks
nothing_written x.luks
expect_fail ALREADY_LUKS "$SEALVM" image encrypt --dek-file k.dek named.luks x.luks
nothing_written x.luks
pass "--in-format: named formats work, a wrong one or a LUKS input is refused"

"$SEALVM" image inspect --json dyn.vhd >i1.json
"$SEALVM" image inspect --json fixed.vhd >i2.json
"$SEALVM" image inspect --json v2.qcow2 >i3.json
"$SEALVM" image inspect --json comp.qcow2 >i4.json
"$SEALVM" image inspect --json disk.raw >i5.json
python3 - <<'PY'
import json
j = json.load(open("i1.json")); v = j["vhd"]
assert j["format"] == "vhd" and v["type"] == "dynamic" and v["footer_checksum"] == "ok", j
assert v["header_checksum"] == "ok" and j["virtual_size"] == 12 << 20, j
j = json.load(open("i2.json")); assert j["vhd"]["type"] == "fixed" and j["vhd"]["footer_checksum"] == "ok", j
j = json.load(open("i3.json")); q = j["qcow2"]
assert q["version"] == 2 and q["cluster_size"] == 65536 and q["backing_file"] is None, j
assert q["compressed_clusters"] is False, j
j = json.load(open("i4.json")); q = j["qcow2"]
assert q["version"] == 3 and q["compressed_clusters"] is True and q["compression_type"] == "zlib", j
j = json.load(open("i5.json")); assert j["format"] == "raw" and j["virtual_size"] == 12 << 20, j
PY
"$SEALVM" image inspect dyn.vhd | grep -q "footer checksum: ok" || fail "human inspect of a VHD"
"$SEALVM" image inspect v3.qcow2 | grep -q "cluster size:  65536" || fail "human inspect of a qcow2"
pass "inspect: VHD type and checksums, qcow2 version, cluster size, backing file, compression"
