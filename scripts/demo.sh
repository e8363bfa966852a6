#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# demo.sh BUILD_DIR — the image part of the sealvm flow on a disk it builds itself:
# generate a DEK, encrypt a dynamic VHD into LUKS in one pass, inspect, verify
# (and let cryptsetup check it), decrypt, compare with the original.
set -euo pipefail
build=${1:-build}
sealvm="$(cd "$build" && pwd)/sealvm"
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

printf '\n\033[1mdemo: the image round trip works.\033[0m Files are in %s\n' "$out"
