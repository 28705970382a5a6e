# Two commands do everything on a fresh Debian machine with Python 3.11:
#   make demo   make test
# Set-up (venv, package with dev extras, mosquitto via apt when missing and root) is shared.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench faults clean setup system-packages

setup: $(STAMP) system-packages

$(STAMP): pyproject.toml
	@# Debian's python3 needs python3-venv for ensurepip; install it when missing and root.
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null \
	  && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# mosquitto is a system package: install it when missing and we are root;
# otherwise say exactly what is missing.
system-packages:
	@if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients >/dev/null; \
	  else \
	    echo "mosquitto is missing: run 'sudo apt-get install mosquitto' (or run make as root)"; exit 1; \
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

clean:
	rm -rf .vi-data .vi-demo .pytest_cache
