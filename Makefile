# freeagentics_rs — `make help` lists the targets. Every target creates or refreshes .venv and
# builds the Rust extension in release mode first, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.deps-stamp
# BLAS pinned to one thread: pool workers run numpy in parallel themselves.
export OPENBLAS_NUM_THREADS := 1
export OMP_NUM_THREADS := 1
export MKL_NUM_THREADS := 1

.PHONY: help venv build demo test test-rust test-python stress bench bench-peers docs format lint wheel wheel-test clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "maturin>=1.8,<2" "pytest>=8" "pytest-timeout>=2.3" "pytest-benchmark>=5" "numpy>=1.24" "threadpoolctl>=3" "tqdm>=4.60"
	touch $(STAMP)

# pymdp 0.0.7.1, the reference the native agents are checked against. It declares many unneeded
# requirements (docs and notebook tools), so it goes in without them, with what it imports.
# Dask distributed: the optional extra freeagentics_rs.distributed runs on.
TEST_STAMP := $(VENV)/.test-deps-stamp
$(TEST_STAMP): $(STAMP) Makefile
	$(PY) -m pip install -q "scipy>=1.10" "pandas>=2" "matplotlib>=3.7" "seaborn>=0.12"
	$(PY) -m pip install -q --no-deps "inferactively-pymdp==0.0.7.1"
	$(PY) -m pip install -q "dask[distributed]>=2024.1" "hypothesis>=6.100"
	$(PY) -m pip install -q "ruff>=0.6" "mypy>=1.11"
	touch $(TEST_STAMP)

venv: $(STAMP)  ## create/refresh the virtualenv with the build and test tools

build: $(STAMP)  ## build the extension in release mode into .venv
	VIRTUAL_ENV=$(CURDIR)/$(VENV) PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/maturin develop --release -q

demo: build $(TEST_STAMP)  ## one multi-agent simulation under each execution strategy (under a minute)
	$(PY) -m freeagentics_rs demo

test: build test-rust test-python  ## Rust core tests, then pytest on both backends

test-rust:  ## the pure Rust core, no Python
	cargo test --release --no-default-features -q

test-python: build $(TEST_STAMP)  ## pytest on the Rust backend, then on the pure-Python one
	FREEAGENTICS_RS_BACKEND=rust $(PY) -m pytest -q
	FREEAGENTICS_RS_BACKEND=python $(PY) -m pytest -q

stress: build $(TEST_STAMP)  ## long randomized concurrency runs, and the property tests with many more examples
	HYPOTHESIS_PROFILE=stress $(PY) -m pytest -q -m "stress or hypothesis"

bench: build $(TEST_STAMP)  ## pytest-benchmark suites (ratios against a baseline measured in the same run)
	mkdir -p .benchmarks
	$(PY) -m pytest benches -q --benchmark-columns=median,min,max,rounds --benchmark-json=.benchmarks/executor.json
	$(PY) benches/table.py .benchmarks/executor.json

# The documentation site's tools, pinned. The API reference is read from python/ without
# importing it, so the docs need no build of the extension.
DOCS_STAMP := $(VENV)/.docs-deps-stamp
$(DOCS_STAMP): $(STAMP) Makefile
	$(PY) -m pip install -q "mkdocs==1.6.1" "mkdocs-material>=9.5,<10" "mkdocstrings>=1.0,<2" "mkdocstrings-python>=2.0,<3"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)  ## build the documentation site into site/ (mkdocs build --strict: any warning fails)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# pymdp 1.x with JAX (about 820 MB) is a speed peer, not a test dependency: its own virtualenv.
PEERS_VENV  := .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.deps-stamp
$(PEERS_STAMP):
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install -q "inferactively-pymdp>=1.0.4,<2"
	touch $(PEERS_STAMP)

bench-peers: build $(TEST_STAMP) $(PEERS_STAMP)  ## factorized agents: ours (Rust, numpy), pymdp 0.0.7.1 and pymdp 1.x JAX, one table
	$(PY) benches/peers/run.py --peer-python $(PEERS_VENV)/bin/python

# The release wheel for this Python, and the sdist, into dist/. `maturin build --release` shares
# target/ (or CARGO_TARGET_DIR) with `make build`, so after it only the packaging step runs.
wheel: $(STAMP)  ## build a release wheel and an sdist into dist/
	rm -rf dist
	$(VENV)/bin/maturin build --release -q --interpreter $(PY) --out dist
	$(VENV)/bin/maturin sdist --out dist

# Installs the wheel into a fresh virtualenv in a temporary directory and runs the smoke test
# there on each backend, so that nothing of the source tree is on the path.
wheel-test: wheel  ## install the wheel into a fresh virtualenv and smoke-test every component on both backends
	PYTHON=$(PYTHON) tests/smoke/wheel_test.sh dist

format: $(TEST_STAMP)  ## ruff format, then ruff's fixable lint findings
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# stubtest imports the built extension and compares it with _native.pyi.
lint: build $(TEST_STAMP)  ## ruff, mypy, stubtest of _native.pyi, rustfmt and clippy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest freeagentics_rs._native --allowlist stubtest-allowlist.txt
	cargo fmt --check
	cargo clippy --release --all-targets -- -D warnings

clean:  ## remove build outputs and the virtualenv
	rm -rf $(VENV) target dist
