# Two commands do everything on a fresh Debian machine with Python 3.11:
#   make demo   make test
# Set-up (venv, package with dev extras, mosquitto via apt when missing and root) is shared.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench faults fuzz clean setup system-packages

setup: $(STAMP) system-packages

$(STAMP): pyproject.toml
	@# Debian's python3 needs python3-venv for ensurepip; install it when missing and root.
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null \
	  && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# System packages the tests use for real: mosquitto (broker), prometheus (promtool and a
# scraping server), chromium (renders the fleet report). Installed when missing and we are
# root; otherwise make says exactly what is missing.
system-packages:
	@missing=""; \
	command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto mosquitto-clients"; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing system packages:$$missing (sudo apt-get install$$missing, or run make as root)"; exit 1; \
	  fi; \
	fi

demo: setup
	$(BIN)/vehicle-ingest demo

test: setup
	$(BIN)/ruff check src gateway simulators tests benchmarks
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src gateway simulators tests benchmarks

bench: setup
	$(BIN)/python benchmarks/bench_decode.py

# Every fuzz/fuzz_*.py harness (atheris, a dev dependency: the wheel bundles libFuzzer,
# no clang needed) for FUZZ_RUNS executions each, niced: one summary line per harness.
FUZZ_RUNS ?= 1000000
fuzz: setup
	nice -n 10 $(BIN)/python fuzz/run_all.py $(FUZZ_RUNS)

clean:
	rm -rf .vi-data .vi-demo .pytest_cache .fuzz
