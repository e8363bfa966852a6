#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Every bad input the image toolchain names: a clear message with its reason,
# exit 1, nothing written (no OUT, no OUT.partial), inputs untouched.
. "$(dirname "$0")/lib.sh"
need qemu-img python3 sha256sum

mkraw disk.raw 6
mkdek k.dek
"$SEALVM" image encrypt --dek-file k.dek disk.raw good.luks >/dev/null
sum_before=$(sha256sum disk.raw good.luks)

# --- DEKs ---------------------------------------------------------------------------
mkdek wrong.dek
expect_fail WRONG_KEY "$SEALVM" image verify --dek-file wrong.dek good.luks
grep -q "does not open" .err || fail "wrong key message"
expect_fail WRONG_KEY "$SEALVM" image decrypt --dek-file wrong.dek good.luks out.raw
nothing_written out.raw
pass "wrong DEK: verify and decrypt refuse, nothing written"

{ cat k.dek; echo; } >nl.dek
printf 'QUJDREVGR0hJSktMTU5PUFFSU1Q=' >short.dek
head -c 390 /dev/urandom | base64 -w0 >long.dek
printf 'q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWe-q80=' >notb64.dek
printf 'q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq81=' >noncanon.dek
printf 'q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq8' >nopad.dek
: >empty.dek
for case in nl:DEK_NEWLINE short:DEK_TOO_SHORT long:DEK_TOO_LONG notb64:DEK_NOT_BASE64 \
	noncanon:DEK_NOT_CANONICAL nopad:DEK_NOT_CANONICAL empty:DEK_EMPTY; do
	f=${case%%:*}.dek reason=${case#*:}
	expect_fail "$reason" "$SEALVM" image encrypt --dek-file "$f" disk.raw out.luks
	grep -q "$f" .err || fail "message does not name $f"
	nothing_written out.luks
	expect_fail "$reason" "$SEALVM" image verify --dek-file "$f" good.luks
	expect_fail "$reason" "$SEALVM" image decrypt --dek-file "$f" good.luks out.raw
	nothing_written out.raw
done
# the message says which rule, never the DEK's text
for f in notb64 noncanon long; do
	"$SEALVM" image encrypt --dek-file $f.dek disk.raw out.luks 2>e.txt && fail "accepted $f"
	grep -qF "$(cut -c1-20 $f.dek)" e.txt && fail "the message quotes the DEK"
done
pass "DEK files with a newline, too short, too long, not base64, not canonical, empty: refused"

# --- inputs that are no disk image, or damaged ----------------------------------------
echo "hello, I am a text file" >text.txt
expect_fail NOT_A_DISK_IMAGE "$SEALVM" image encrypt --dek-file k.dek text.txt out.luks
nothing_written out.luks
: >empty.img
expect_fail NOT_A_DISK_IMAGE "$SEALVM" image encrypt --dek-file k.dek empty.img out.luks
nothing_written out.luks
head -c 1048576 /dev/urandom >nosig.img
printf '\x00\x00' | dd of=nosig.img bs=1 seek=510 conv=notrunc status=none
expect_fail NOT_A_DISK_IMAGE "$SEALVM" image encrypt --dek-file k.dek nosig.img out.luks
grep -q -- "--in-format raw" .err || fail "the message does not say how to force raw"
nothing_written out.luks
"$SEALVM" image encrypt --dek-file k.dek --in-format raw nosig.img forced.luks >/dev/null
pass "input that is no disk image: refused (a headerless raw disk needs --in-format raw)"

qemu-img convert -f raw -O vpc -o subformat=dynamic,force_size=on disk.raw dyn.vhd
qemu-img convert -f raw -O vpc -o subformat=fixed,force_size=on disk.raw fixed.vhd

head -c $(($(stat -c %s dyn.vhd) - 70000)) dyn.vhd >trunc.vhd
expect_fail VHD_TRUNCATED "$SEALVM" image encrypt --dek-file k.dek trunc.vhd out.luks
nothing_written out.luks
pass "truncated VHD: refused"

cp fixed.vhd badsum.vhd
size=$(stat -c %s badsum.vhd)
printf 'X' | dd of=badsum.vhd bs=1 seek=$((size - 512 + 28)) conv=notrunc status=none # creator app
expect_fail VHD_FOOTER_CHECKSUM "$SEALVM" image encrypt --dek-file k.dek badsum.vhd out.luks
nothing_written out.luks
"$SEALVM" image inspect --json badsum.vhd | grep -q '"footer_checksum": "mismatch"' ||
	fail "inspect does not report the checksum mismatch"
pass "VHD footer checksum mismatch: refused, and inspect reports it"

cp dyn.vhd badbat.vhd
python3 - badbat.vhd <<'PY'
import struct, sys
f = open(sys.argv[1], "r+b")
footer = f.read(512)
hdr_off = struct.unpack(">Q", footer[16:24])[0]
f.seek(hdr_off)
hdr = f.read(1024)
bat_off = struct.unpack(">Q", hdr[16:24])[0]
f.seek(bat_off)
f.write(struct.pack(">I", 0x00FFFFF0))  # block 0 -> sector far past the end (the BAT has no checksum)
PY
expect_fail VHD_BAT_OUT_OF_RANGE "$SEALVM" image encrypt --dek-file k.dek badbat.vhd out.luks
nothing_written out.luks
pass "VHD dynamic block table pointing past the end of the file: refused"

qemu-img create -q -f qcow2 base.qcow2 6M
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 over.qcow2
expect_fail QCOW2_BACKING_FILE "$SEALVM" image encrypt --dek-file k.dek over.qcow2 out.luks
grep -q "base.qcow2" .err || fail "the message does not name the backing file"
grep -q "qemu-img convert" .err || fail "the message does not say how to flatten"
nothing_written out.luks
pass "qcow2 with a backing file: refused with how to flatten it"

# --- LUKS inputs for verify/decrypt ---------------------------------------------------
expect_fail NOT_LUKS "$SEALVM" image verify --dek-file k.dek disk.raw
expect_fail NOT_LUKS "$SEALVM" image decrypt --dek-file k.dek disk.raw out.raw
nothing_written out.raw
head -c 1000 good.luks >hdrcut.luks
expect_fail "TRUNCATED\|NOT_LUKS" "$SEALVM" image verify --dek-file k.dek hdrcut.luks
head -c 100000 good.luks >kscut.luks
expect_fail TRUNCATED "$SEALVM" image verify --dek-file k.dek kscut.luks
head -c $(($(stat -c %s good.luks) - 100)) good.luks >paycut.luks
expect_fail TRUNCATED "$SEALVM" image decrypt --dek-file k.dek paycut.luks out.raw
nothing_written out.raw
pass "not LUKS, truncated header, truncated keyslots, truncated payload: refused"

# --- outputs ---------------------------------------------------------------------------
cp good.luks exists.luks
before=$(sha256sum <exists.luks)
expect_fail OUTPUT_EXISTS "$SEALVM" image encrypt --dek-file k.dek disk.raw exists.luks
grep -q -- "--force" .err || fail "the message does not mention --force"
[ "$(sha256sum <exists.luks)" = "$before" ] || fail "the existing output was changed"
[ ! -e exists.luks.partial ] || fail "partial left"
"$SEALVM" image encrypt --dek-file k.dek --force disk.raw exists.luks >/dev/null
[ "$(sha256sum <exists.luks)" != "$before" ] || fail "--force did not replace"
cryptsetup open --test-passphrase --key-file k.dek exists.luks
cp disk.raw exists.raw
expect_fail OUTPUT_EXISTS "$SEALVM" image decrypt --dek-file k.dek good.luks exists.raw
pass "OUT exists: refused and unchanged unless --force"

cp disk.raw same.raw
ln same.raw same-link.raw
for force in "" --force; do
	expect_fail SAME_FILE "$SEALVM" image encrypt --dek-file k.dek $force same.raw same.raw
	expect_fail SAME_FILE "$SEALVM" image encrypt --dek-file k.dek $force same.raw same-link.raw
	expect_fail SAME_FILE "$SEALVM" image decrypt --dek-file k.dek $force good.luks good.luks
done
same_bytes same.raw disk.raw
pass "IN and OUT the same file (also through a hard link, also with --force): refused"

mkraw big.raw 8
# ulimit -f counts 1024-byte blocks; sealvm ignores SIGXFSZ so the write fails with EFBIG
(ulimit -f 4096; "$SEALVM" image encrypt --dek-file k.dek big.raw fsz.luks) >.out 2>.err && fail "no error past the file-size limit"
grep -q FILE_TOO_LARGE .err || { cat .err; fail "file-size limit: no FILE_TOO_LARGE"; }
nothing_written fsz.luks
(ulimit -f 4096; "$SEALVM" image decrypt --dek-file k.dek "$(pwd)/exists.luks" fsz.raw) >.out 2>.err && fail "no error past the file-size limit"
grep -q FILE_TOO_LARGE .err || { cat .err; fail "file-size limit (decrypt): no FILE_TOO_LARGE"; }
nothing_written fsz.raw
pass "a file-size limit (ulimit -f): clear error, nothing written"

[ "$(sha256sum disk.raw good.luks)" = "$sum_before" ] || fail "an input was changed"
pass "inputs untouched by all of the above"
