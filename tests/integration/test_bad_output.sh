#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Outputs the file system refuses: a directory that is not writable (read-only
# mount, and chattr +i) and a full disk (a small tmpfs). Tests run as root, so
# permissions alone would not stop the write; mounts need a private namespace.
. "$(dirname "$0")/lib.sh"
need unshare mount
[ "$(id -u)" = 0 ] || skip "needs root for a private mount namespace"
unshare -m true 2>/dev/null || skip "cannot create a mount namespace here"

mkraw disk.raw 8
mkdek k.dek
"$SEALVM" image encrypt --dek-file k.dek disk.raw good.luks >/dev/null
mkdir ro full

# Inside a private mount namespace: ro/ is a read-only tmpfs, full/ a 4 MiB tmpfs.
cat >inner.sh <<INNER
set -u
cd "$T"
mount -t tmpfs -o ro,size=1M none ro || exit 90
mount -t tmpfs -o size=4M none full || exit 90
rc=0
"$SEALVM" image encrypt --dek-file k.dek disk.raw ro/out.luks 2>ro.err && rc=1
ls -A ro >ro.ls
"$SEALVM" image encrypt --dek-file k.dek disk.raw full/out.luks 2>full.err && rc=1
"$SEALVM" image decrypt --dek-file k.dek good.luks full/out.raw 2>full2.err && rc=1
ls -A full >full.ls
df -k full | tail -1 >full.df
exit \$rc
INNER
rc=0
unshare -m bash inner.sh || rc=$?
[ $rc -ne 90 ] || skip "cannot mount tmpfs in a private namespace"
[ $rc -eq 0 ] || fail "a write into a read-only or full file system succeeded"

grep -q OUTPUT_NOT_WRITABLE ro.err || { cat ro.err; fail "read-only: no OUTPUT_NOT_WRITABLE"; }
grep -q "ro/out.luks" ro.err || fail "read-only: the message does not name the output"
[ ! -s ro.ls ] || fail "read-only dir is not empty: $(cat ro.ls)"
pass "OUT's directory not writable (read-only mount): clear error, nothing written"

grep -q NO_SPACE full.err || { cat full.err; fail "disk full: no NO_SPACE"; }
grep -q NO_SPACE full2.err || { cat full2.err; fail "disk full (decrypt): no NO_SPACE"; }
[ ! -s full.ls ] || fail "full dir is not empty: $(cat full.ls)"
pass "disk full (4 MiB tmpfs): clear error, no partial file left"

if chattr +i ro 2>/dev/null; then
	expect_fail OUTPUT_NOT_WRITABLE "$SEALVM" image encrypt --dek-file k.dek disk.raw ro/out.luks
	chattr -i ro
	[ -z "$(ls -A ro)" ] || fail "immutable dir was written"
	pass "OUT's directory immutable (chattr +i): clear error"
else
	echo "note: chattr +i unsupported on this file system; the read-only mount case covered it"
fi
