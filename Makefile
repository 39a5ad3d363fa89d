# Loa: one entry point for tooling. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
#: Loa alone (what `loa demo` runs on): no test tools, no benchmark peers
BASE_STAMP := $(VENV)/.installed-base

.PHONY: help setup demo-setup demo test browser screenshots console-assets slow lint typecheck rules dashboards unit integration faults cluster-test model mutation mutation-quick bench bench-billion kafka-start kafka-stop clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(BASE_STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Loa needs Python 3.11+)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	@touch $(BASE_STAMP)

$(STAMP): $(BASE_STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	@touch $(STAMP)

demo-setup: $(BASE_STAMP)  ## what the demo needs only: .venv with Loa, the Kafka broker jars
	bash deploy/kafka/kafka.sh fetch

setup: $(STAMP) demo-setup  ## demo-setup, plus the dev tools, the Kafka tools jars, Prometheus, the dashboard linter, the test SMSC
	bash deploy/smsc/smsc.sh install
	bash benchmarks/kafka-tools.sh >/dev/null
	bash deploy/prometheus/install.sh
	bash deploy/grafana/lint/install.sh >/dev/null
	bash deploy/console/install-chromium.sh >/dev/null

# the demo installs only what it runs (issue 20: it ran the full setup first, 183 s on a fresh
# machine); `make test` and the other targets still install everything
demo: demo-setup  ## broker + worker + 1M subscribers + a typhoon alert fanned out + summary
	$(BIN)/loa demo

lint: $(STAMP)  ## ruff lint and format check
	$(BIN)/ruff check streams tests benchmarks
	$(BIN)/ruff format --check streams tests benchmarks

typecheck: $(STAMP)  ## mypy --strict on streams/
	$(BIN)/mypy

unit: $(STAMP)  ## unit tests only (no broker)
	$(BIN)/pytest tests/unit

integration: setup  ## integration tests only (real broker, real Prometheus)
	$(BIN)/pytest tests/integration

test: setup lint typecheck rules dashboards  ## lint, typecheck, rules, unit and integration tests (starts its own broker)
	$(BIN)/pytest tests/unit tests/integration tests/deploy tests/browser -m "not slow" --durations=15

browser: setup  ## the console's browser tests only (headless Chromium, real console, worker and broker)
	$(BIN)/pytest tests/browser

screenshots: setup  ## the browser tests, writing the README's console screenshots into docs/img
	LOA_SCREENSHOTS=docs/img $(BIN)/pytest tests/browser

console-assets: $(STAMP)  ## rebuild the console's vendored files from the pinned npm packages (deploy/console/build.sh)
	bash deploy/console/build.sh

slow: setup  ## the slow tests make test leaves out (loa bench --quick, registry rebuild of the border, a 10M census, the delivery bench)
	$(BIN)/pytest tests/integration tests/deploy -m slow

faults: setup  ## fault tests: kill -9, rolling restarts, broker outages, poison (bounded; gaps in .loa/fault-gaps.jsonl)
	$(BIN)/pytest tests/faults

cluster-test: setup  ## secured 3-broker cluster tests (deploy/kafka/cluster.sh: SASL_SSL, mTLS, ACLs, broker kills)
	$(BIN)/pytest tests/cluster

rules:  ## promtool: check and unit-test the Prometheus alert rules (installs prometheus if missing)
	bash deploy/prometheus/install.sh
	promtool check rules deploy/prometheus/rules/*.yml
	promtool test rules deploy/prometheus/tests/*.test.yml

dashboards:  ## loa-dashboard-lint: Grafana's schema and dashboard-linter rules over deploy/grafana/*.json (builds it if missing)
	"$$(bash deploy/grafana/lint/install.sh)" deploy/grafana/*.json

model: setup  ## the lifecycle model tests, longer: 5,000 stories against decide, 40 against a real worker
	LOA_MODEL_EXAMPLES=5000 $(BIN)/pytest tests/unit/test_lifecycle_model.py
	LOA_MODEL_WORKER_EXAMPLES=40 $(BIN)/pytest tests/integration/test_lifecycle_model.py

mutation: $(STAMP)  ## mutation score of the pure core (mutmut, unit tests; slow). One module: MODULES=regions
	$(BIN)/pip install --quiet -e '.[mutation]'
	$(BIN)/python -m tests.tools.mutation $(MODULES)

mutation-quick: $(STAMP)  ## mutation score of fanout.throttle only (about 80 s on two shared cores: cheap enough for CI)
	$(BIN)/pip install --quiet -e '.[mutation]'
	$(BIN)/python -m tests.tools.mutation fanout.throttle

bench: setup  ## loa bench (fan-out by the broker clock, peers, scale, latency, sustained) + directory; benchmarks/results/
	$(BIN)/loa bench
	$(BIN)/python -m benchmarks.directory
	$(BIN)/python -m benchmarks.takeover

# issue 22's one quiet run (about an hour; run it on a machine doing nothing else): the first
# and warm national alert at 10M and 100M, the peers at 10M records, a billion tasks back to
# back counted live by the Java exact reader, and a 100M worker restart from its snapshots
bench-billion: setup  ## the quiet run: first/warm at 1e7 and 1e8, peers, the sustained billion (exact), the 100M restart
	$(BIN)/loa bench --sizes 1e7,1e8 --workers 1 --runs "loa first,loa" --peer-records 1e7 \
	  --only fanout,peers,sustained --total 1e9 --sustained-subscribers 1e7 --reader java \
	  --retention-bytes 2147483648 \
	  --out benchmarks/results/billion
	$(BIN)/python -m benchmarks.takeover --subscribers 1e8 --name takeover-100m

kafka-start: setup  ## start the local dev broker
	bash deploy/kafka/kafka.sh start

kafka-stop:  ## stop the local dev broker
	bash deploy/kafka/kafka.sh stop

clean:  ## remove the virtualenv and local state
	rm -rf $(VENV) .loa .mypy_cache .ruff_cache .pytest_cache mutants
