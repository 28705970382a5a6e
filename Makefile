# Two commands do everything on a fresh Debian machine with Python 3.11:
#   make demo   make test
# Set-up (venv, package with dev extras, mosquitto via apt when missing and root) is shared.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test wheel-check lint bench bench-pipeline soak faults can-parity fuzz c-client clean setup system-packages

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
	command -v cc >/dev/null 2>&1 || missing="$$missing gcc libc6-dev"; \
	[ -f /usr/include/mosquitto.h ] || missing="$$missing libmosquitto-dev"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing system packages:$$missing (sudo apt-get install$$missing, or run make as root)"; exit 1; \
	  fi; \
	fi

demo: setup
	$(BIN)/vehicle-ingest demo

# The wheel check (a fresh venv and a demo from another folder) runs beside pytest: it waits mostly on pip.
# pytest runs on two workers (one test file per worker: tests mostly wait on gateway processes);
# tests that compare a rate with itself (marker serial) run alone afterwards.
test: setup
	$(BIN)/ruff check src gateway simulators tests benchmarks fuzz
	$(BIN)/ruff format --check src gateway simulators tests benchmarks fuzz
	$(BIN)/mypy
	@$(BIN)/python -m tests.wheel_check > .wheel-check.log 2>&1 & wheel=$$!; \
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not serial" && $(BIN)/python -m pytest -q -m serial; tests=$$?; \
	wait $$wheel; wheel_rc=$$?; cat .wheel-check.log; \
	[ $$tests = 0 ] && [ $$wheel_rc = 0 ]
	$(MAKE) c-client C_CASES=2000

# The wheel, installed alone in a fresh venv, runs the demo from a folder outside the repository.
wheel-check: setup
	$(BIN)/python -m tests.wheel_check

# mypy reads [tool.mypy] in pyproject.toml: strict, over the installed package names.
lint: setup
	$(BIN)/ruff check src gateway simulators tests benchmarks fuzz
	$(BIN)/ruff format --check src gateway simulators tests benchmarks fuzz
	$(BIN)/mypy

# Every benchmark, each printing one JSON object as its last line (results: benchmarks/README.md).
bench: setup
	$(BIN)/python benchmarks/bench_decode.py --json
	$(BIN)/python benchmarks/bench_can.py --json
	$(BIN)/python benchmarks/bench_tags.py --json
	$(BIN)/python benchmarks/bench_aggregates.py --json
	$(BIN)/python benchmarks/bench_query_isolation.py --json
	$(MAKE) bench-pipeline

# End to end at increasing offered loads, with the plot and a py-spy profile at 1 M samples/s (~6 min).
bench-pipeline: setup
	$(BIN)/python benchmarks/bench_pipeline.py --loads 250000,500000,750000,1000000,1250000 --duration 30 --plot benchmarks/pipeline.png --json
	$(BIN)/python benchmarks/bench_pipeline.py --loads 1000000 --duration 25 --profile benchmarks/profile_1m.txt --json

# Ten minutes at 1 M samples/s offered: gateway RSS over time (benchmarks/rss_soak.png).
soak: setup
	$(BIN)/python benchmarks/bench_pipeline.py --loads 1000000 --duration 600 --drain-timeout 300 --rss-plot benchmarks/rss_soak.png --json

# The fault matrix at full size (kill -9 x20, broker restarts, store outage,
# CDP outage, shared-subscription failover): several minutes. `make test` runs
# the same scenarios small. Needs root (chattr, mount) for the store outage.
faults: setup
	$(BIN)/python -m tests.faults

# Every message of every DBC in the opendbc package against cantools (make test runs a subset).
can-parity: setup
	$(BIN)/python -m tests.can_parity --frames 200

# Every fuzz/fuzz_*.py harness (atheris, a dev dependency: the wheel bundles libFuzzer,
# no clang needed) for FUZZ_RUNS executions each, niced: one summary line per harness.
FUZZ_RUNS ?= 1000000
fuzz: setup
	nice -n 10 $(BIN)/python fuzz/run_all.py $(FUZZ_RUNS)

# The C reference client (clients/c/README.md): gcc and libmosquitto-dev via apt when missing and
# root; a release and an ASan+UBSan build (-std=c99 -Werror); the C unit tests under both; then C
# encoder == Python encoder == schemas/golden, one line per golden vector and a summary of
# C_CASES generated cases (fixed seed) on both builds.
C_CASES ?= 20000
c-client: setup
	$(MAKE) -C clients/c all
	$(MAKE) -C clients/c check
	$(BIN)/python clients/c/tests/parity.py --cases $(C_CASES) --no-build

clean:
	rm -rf .vi-data .vi-demo .pytest_cache .fuzz
