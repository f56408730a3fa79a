# vodgrid's two commands: `make demo` and `make test`. Both install what is missing first.
BUILD_JOBS ?= $(shell nproc)
VODGRID := build/release/src/cli/vodgrid
# `make fuzz`: seconds per libFuzzer target; `make test` runs each for FUZZ_TEST_SECONDS.
FUZZ_SECONDS ?= 60
FUZZ_TEST_SECONDS ?= 10

.PHONY: all deps deps-bench build asan demo install package test test-release test-asan test-fuzz fuzz check-format format bench clean

all: build

deps:
	@bash scripts/install-deps.sh

deps-bench:
	@bash scripts/install-deps.sh --bench

build: deps
	@cmake --preset release >/dev/null
	@cmake --build --preset release -j $(BUILD_JOBS)

asan: deps
	@cmake --preset asan >/dev/null
	@cmake --build --preset asan -j $(BUILD_JOBS)

demo: build
	@$(VODGRID) demo

# The binary, the watch page, the systemd units and the guides under PREFIX (docs/install.md).
PREFIX ?= /usr/local
install: build
	@cmake --install build/release --prefix $(PREFIX)

# The Debian package, build/release/vodgrid_VERSION_ARCH.deb (docs/install.md).
package: build
	@cd build/release && cpack -G DEB

check-format: deps
	@bash scripts/check-format.sh

format:
	@git ls-files '*.cc' '*.h' | xargs clang-format -i

test-release: build
	@ctest --preset release

test-asan: asan
	@ctest --preset asan

# libFuzzer targets (fuzz/), built with clang into build/fuzz.
test-fuzz: deps
	@BUILD_JOBS=$(BUILD_JOBS) bash fuzz/run.sh $(FUZZ_TEST_SECONDS)

fuzz: deps
	@BUILD_JOBS=$(BUILD_JOBS) bash fuzz/run.sh $(FUZZ_SECONDS)

# The three suites in turn, the ASan build beside the release tests and the fuzz build beside the
# ASan tests, at nice 19 (scripts/test-all.sh says why).
test: check-format build
	@bash scripts/test-all.sh $(BUILD_JOBS) $(FUZZ_TEST_SECONDS)

bench: build deps-bench
	@bash bench/run_all.sh

clean:
	rm -rf build
