#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# fuzz.sh FUZZ_BUILD_DIR SECONDS — runs every libFuzzer target for SECONDS over
# a scratch copy of its seed corpus (the tree's corpus is read, never written).
# A crash fails the run and leaves the reproducer in FUZZ_BUILD_DIR/crashes/.
set -euo pipefail
build=$1
secs=${2:-20}
src=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$build/crashes"
ran=0
for bin in "$build"/tests/fuzz/fuzz_*; do
	[ -f "$bin" ] && [ -x "$bin" ] || continue
	name=${bin##*/fuzz_}
	work=$(mktemp -d)
	echo "fuzz: $name for ${secs}s"
	if ! "$bin" -max_total_time="$secs" -max_len=65536 -rss_limit_mb=1024 -timeout=10 \
		-artifact_prefix="$build/crashes/$name-" -print_final_stats=0 \
		"$work" "$src/tests/fuzz/corpus/$name" >"$build/fuzz-$name.log" 2>&1; then
		tail -40 "$build/fuzz-$name.log"
		echo "fuzz: $name FAILED (reproducer in $build/crashes/)" >&2
		rm -rf "$work"
		exit 1
	fi
	grep -E '^#[0-9]+.*DONE|Done [0-9]+ runs' "$build/fuzz-$name.log" | tail -1 || true
	rm -rf "$work"
	ran=$((ran + 1))
done
[ $ran -gt 0 ] || { echo "fuzz: no targets in $build" >&2; exit 1; }
echo "fuzz: $ran targets ran ${secs}s each without a crash"
