# vodgrid's two commands: `make demo` and `make test`. Both install what is missing first.
BUILD_JOBS ?= $(shell nproc)
VODGRID := build/release/src/cli/vodgrid

.PHONY: all deps deps-bench build asan demo test test-release test-asan check-format format bench clean

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

check-format: deps
	@bash scripts/check-format.sh

format:
	@git ls-files '*.cc' '*.h' | xargs clang-format -i

test-release: build
	@ctest --preset release

test-asan: asan
	@ctest --preset asan

test: check-format
	@$(MAKE) --no-print-directory test-release
	@$(MAKE) --no-print-directory test-asan
	@echo "make test: release and asan suites passed"

bench: build deps-bench
	@bash bench/run_all.sh

clean:
	rm -rf build
