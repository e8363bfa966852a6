# SPDX-License-Identifier: Apache-2.0
# The thin top-level Makefile: every target installs missing Debian packages
# first (when run as root), then builds with Meson + Ninja into build/.
#
#   make            build build/sealvm
#   make check      build and run the whole test suite (unit, integration, fuzz smoke)
#   make check-asan the same suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   make demo       the whole flow on a small disk image the demo builds itself
#   make bench      benchmarks against the peers (not part of check)
#   make fuzz       longer fuzzing runs (FUZZ_SECONDS per target, default 300)

BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
MESON      ?= meson
NINJA      ?= ninja
FUZZ_SECONDS ?= 300

.PHONY: all build deps check check-asan demo bench fuzz fuzz-smoke format clean

all: build

deps:
	@scripts/deps.sh build

$(BUILD)/build.ninja:
	$(MESON) setup $(BUILD) >/dev/null

build: deps $(BUILD)/build.ninja
	@$(NINJA) -C $(BUILD)

check:
	@scripts/deps.sh check fuzz
	@$(MAKE) --no-print-directory build
	@scripts/run-tests.sh $(BUILD)
	@$(MAKE) --no-print-directory fuzz-smoke

check-asan:
	@scripts/deps.sh check
	@test -f $(ASAN_BUILD)/build.ninja || $(MESON) setup $(ASAN_BUILD) -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug >/dev/null
	@$(NINJA) -C $(ASAN_BUILD)
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1 \
	 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	 scripts/run-tests.sh $(ASAN_BUILD)

demo:
	@scripts/deps.sh demo
	@$(MAKE) --no-print-directory build
	@scripts/demo.sh $(BUILD)

bench:
	@scripts/deps.sh bench
	@$(MAKE) --no-print-directory build
	@bench/image_encrypt $(BUILD)
	@bench/api_ceiling $(BUILD)
	@bench/kms $(BUILD)
	@bench/cos $(BUILD)

$(FUZZ_BUILD)/build.ninja:
	CC=clang $(MESON) setup $(FUZZ_BUILD) -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debugoptimized >/dev/null

fuzz-smoke: $(FUZZ_BUILD)/build.ninja
	@scripts/deps.sh fuzz
	@$(NINJA) -C $(FUZZ_BUILD)
	@scripts/fuzz.sh $(FUZZ_BUILD) 20

fuzz: $(FUZZ_BUILD)/build.ninja
	@scripts/deps.sh fuzz
	@$(NINJA) -C $(FUZZ_BUILD)
	@scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

format:
	@git ls-files '*.c' '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
