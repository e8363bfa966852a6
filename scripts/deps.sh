#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# deps.sh — make sure the Debian packages sealvm builds, tests and runs with are installed.
#
# Usage: scripts/deps.sh [build|check|demo|bench|fuzz]...
# As root, installs what is missing with apt-get; otherwise prints the
# apt-get command to run and fails if a package needed to build is missing.
set -euo pipefail

build_pkgs=(meson ninja-build pkg-config gcc libc6-dev libssl-dev libcryptsetup-dev
	libjansson-dev zlib1g-dev libcmocka-dev libsqlite3-dev libmicrohttpd-dev
	libcurl4-openssl-dev libp11-kit-dev)
# Real peers the tests drive, and the tools the tests use to make bad inputs.
check_pkgs=(cryptsetup-bin qemu-utils python3 python3-cryptography e2fsprogs util-linux
	coreutils xxd time curl sqlite3 softhsm2 python3-boto3 python3-botocore awscli)
demo_pkgs=(cryptsetup-bin qemu-utils fdisk e2fsprogs curl python3)
bench_pkgs=(qemu-utils time bc wrk nginx-light sqlite3 softhsm2 awscli)
fuzz_pkgs=(clang libclang-rt-14-dev)

want=()
for set in "${@:-build}"; do
	case "$set" in
	build) want+=("${build_pkgs[@]}") ;;
	check) want+=("${build_pkgs[@]}" "${check_pkgs[@]}") ;;
	demo) want+=("${build_pkgs[@]}" "${demo_pkgs[@]}") ;;
	bench) want+=("${build_pkgs[@]}" "${bench_pkgs[@]}") ;;
	fuzz) want+=("${build_pkgs[@]}" "${fuzz_pkgs[@]}") ;;
	*) echo "deps.sh: unknown set '$set'" >&2; exit 2 ;;
	esac
done

missing=()
for p in "${want[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$status" = installed ] || missing+=("$p")
done
# de-duplicate
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | awk 'NF && !seen[$0]++')
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
	echo "deps: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; then
		apt-get update -q >&2
		apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
	fi
	exit 0
fi
echo "deps: missing Debian packages: ${missing[*]}" >&2
echo "deps: install them with: sudo apt-get install ${missing[*]}" >&2
exit 1
