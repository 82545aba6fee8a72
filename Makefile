# Everything a user runs. Each target installs what it needs on first use, from the committed lock
# files, and can be run again at no cost.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
LOCK := requirements/py312.lock
DBT_VENV := .venv-dbt
DBT_LOCK := requirements/dbt-py312.lock
DBT := $(CURDIR)/$(DBT_VENV)/bin/dbt
DBT_DIR := include/dbt
# The manifest's path is include/retail/transform/dbt_project.py's (DBT_MANIFEST); make needs it as a file target.
MANIFEST := $(shell python3 -m include.retail.transform.dbt_project manifest)
DBT_SOURCES := $(shell find $(DBT_DIR)/models $(DBT_DIR)/macros $(DBT_DIR)/tests -type f 2>/dev/null) \
	$(DBT_DIR)/dbt_project.yml $(DBT_DIR)/profiles.yml
UV_VERSION := 0.13.9
UV := .tools/bin/uv
MWAA_CONSTRAINTS := ../shared/mwaa/airflow-3.3.1-constraints-py3.12.txt
WORKBOOK ?=

export UV_PYTHON_DOWNLOADS := never
export AIRFLOW__COSMOS__ENABLE_TELEMETRY := False
export DBT_SEND_ANONYMOUS_USAGE_STATS := False

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(UV):
	@echo "First-time setup: installing uv $(UV_VERSION) into .tools/ (a few seconds) ..." >&2
	@python3 -m venv .tools >&2
	@.tools/bin/pip install --quiet uv==$(UV_VERSION) >&2

$(VENV)/.synced: $(LOCK) | $(UV)
	@echo "Installing Airflow 3.3.1, its providers and the pipeline's libraries into $(VENV) from $(LOCK)" \
		"(about 1-3 minutes the first time, seconds after) ..." >&2
	@test -x $(PY) || $(UV) venv --quiet --python "$$(scripts/find-python312)" $(VENV) >&2
	@$(UV) pip sync --quiet --compile-bytecode --python $(PY) $(LOCK) >&2
	@touch $@

# dbt lives in a virtualenv of its own: dbt-core's pins conflict with Airflow's (MWAA's).
$(DBT_VENV)/.synced: $(DBT_LOCK) | $(UV)
	@echo "Installing dbt into its own virtualenv $(DBT_VENV) from $(DBT_LOCK) (about a minute the first time) ..." >&2
	@test -x $(DBT_VENV)/bin/python || $(UV) venv --quiet --python "$$(scripts/find-python312)" $(DBT_VENV) >&2
	@$(UV) pip sync --quiet --compile-bytecode --python $(DBT_VENV)/bin/python $(DBT_LOCK) >&2
	@touch $@

# Cosmos renders the transform DAG from this manifest, so parsing the DAG never runs dbt.
$(MANIFEST): $(DBT_VENV)/.synced $(DBT_SOURCES)
	@echo "Parsing the dbt project into its manifest and docs site (about 15 s) ..." >&2
	@python3 -m include.retail.transform.dbt_project parse >&2

.PHONY: venv
venv: $(VENV)/.synced $(DBT_VENV)/.synced $(MANIFEST) ## build the Airflow and dbt virtualenvs and the dbt manifest

.PHONY: demo
demo: venv ## run the pipeline end to end on the embedded stack (WORKBOOK=path for your own file)
	@$(PY) -m devstack demo $(if $(WORKBOOK),--workbook "$(WORKBOOK)")

.PHONY: test
test: venv ## run the whole test suite (starts its own PostgreSQL and moto server)
	@$(PY) -m pytest

.PHONY: test-fast
test-fast: venv $(MANIFEST) ## unit tests, DAG integrity and the dbt manifest (about 25 s; no stack needed)
	@$(PY) -m pytest -q tests/unit tests/dags

.PHONY: compose-test
compose-test: venv ## run docker-compose.yaml for real: build, up, both executors, the real workbook, down -v
	@$(PY) -m pytest tests/compose

# TRIGGER: how uploads are detected, sensor (the default) or events (S3 notifications through SQS).
TRIGGER ?= sensor

.PHONY: up
up: venv ## start a full local Airflow (UI on 127.0.0.1:8080) with PostgreSQL and moto S3/SNS (TRIGGER=events)
	@$(PY) -m devstack up --trigger "$(TRIGGER)"

.PHONY: down
down: ## stop everything the embedded stack started
	@if [ -x $(PY) ]; then $(PY) -m devstack down; else echo "Nothing to stop."; fi

.PHONY: status
status: venv ## say what of the embedded stack is running
	@$(PY) -m devstack status

.PHONY: health
health: venv ## check the pipeline like a monitor would (exit 0 OK, 1 WARNING, 2 CRITICAL)
	@$(PY) -m devstack health

.PHONY: warehouse-url
warehouse-url: venv ## print a libpq URL to the warehouse database
	@$(PY) -m devstack warehouse-url

.PHONY: psql
psql: venv ## open psql on the warehouse
	@psql "$$($(PY) -m devstack warehouse-url)"

.PHONY: upload
upload: venv ## put WORKBOOK under incoming/ of the bucket
	@test -n "$(WORKBOOK)" || { echo "usage: make upload WORKBOOK=path/to/file.xlsx" >&2; exit 2; }
	@$(PY) -m devstack upload "$(WORKBOOK)"

.PHONY: dbt
dbt: venv $(MANIFEST) ## run dbt against the stack's warehouse: make dbt ARGS="ls" (or "build -s gold")
	@$(PY) -m devstack dbt -- $(ARGS)

.PHONY: trigger
trigger: venv ## load one object now through the running services: make trigger KEY=incoming/file.xlsx
	@test -n "$(KEY)" || { echo "usage: make trigger KEY=incoming/file.xlsx" >&2; exit 2; }
	@$(PY) -m devstack trigger "$(KEY)"

.PHONY: logs
logs: ## follow the logs of the running services (Ctrl-C to stop)
	@ls .devstack/logs/*.log >/dev/null 2>&1 || { echo "No logs yet: make up first." >&2; exit 1; }
	@tail -n 20 -F .devstack/logs/*.log

.PHONY: reset
reset: venv ## empty the warehouse and the bucket (keeps the virtualenvs and the stack's settings)
	@$(PY) -m devstack reset

.PHONY: report
report: venv ## copy the latest gold report from the stack's bucket to a local file and print where it is
	@$(PY) -m devstack report

.PHONY: env
env: venv ## print the stack's Airflow settings as shell exports (eval "$$(make -s env)")
	@$(PY) -m devstack env

.PHONY: lint
lint: venv ## ruff, the Compose schema, cfn-lint
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yaml
	@$(VENV)/bin/cfn-lint --include-checks I -- infra/retail-pipeline.yaml

.PHONY: bench
bench: venv ## measure the bronze load of the real workbook against pandas + openpyxl + to_sql
	@$(PY) -m bench.bench_bronze_load

.PHONY: docs
docs: up ## build the dbt docs site (with the lineage graph) against the warehouse
	@eval "$$($(PY) -m devstack env)" && cd $(DBT_DIR) && $(DBT) docs generate --static --quiet >&2
	@echo "dbt docs built in $(DBT_DIR)/target/. Open it with:"
	@echo "  $(DBT_VENV)/bin/dbt docs serve --project-dir $(DBT_DIR) --profiles-dir $(DBT_DIR) --port 8081"
	@echo "  (then http://127.0.0.1:8081), or open $(DBT_DIR)/target/static_index.html in a browser."

.PHONY: lock
lock: | $(UV) ## re-resolve requirements against MWAA's Airflow 3.3.1 / Python 3.12 constraints
	$(UV) pip compile --quiet --python-version 3.12 --python-platform x86_64-manylinux_2_28 --no-header \
		-c $(MWAA_CONSTRAINTS) requirements.txt requirements/dev.in -o $(LOCK)
	$(UV) pip compile --quiet --python-version 3.12 --python-platform x86_64-manylinux_2_28 --no-header \
		requirements/dbt.in -o $(DBT_LOCK)

# Amazon MWAA (docs/mwaa.md). STACK names the CloudFormation stack, one per environment.
STACK ?= retail
ALERT_EMAIL ?=

.PHONY: mwaa-bundle
mwaa-bundle: venv ## build the Amazon MWAA bundle in build/mwaa (DAGs, plugins.zip, requirements.txt, startup.sh)
	@$(PY) -m mwaa bundle

.PHONY: mwaa-deploy
# TRIGGER is passed only when given (make mwaa-deploy TRIGGER=events): otherwise the stack keeps its value.
mwaa-deploy: venv ## create or update the AWS stack and its MWAA environment (STACK=retail ALERT_EMAIL=you@example.com TRIGGER=events)
	@$(PY) -m mwaa deploy --stack "$(STACK)" $(if $(ALERT_EMAIL),--alert-email "$(ALERT_EMAIL)") \
		$(if $(filter command line environment,$(origin TRIGGER)),--parameter Trigger="$(TRIGGER)")

.PHONY: mwaa-upload
mwaa-upload: venv ## sync the bundle to STACK's MWAA bucket (DAG and code changes need nothing more)
	@$(PY) -m mwaa upload --stack "$(STACK)"

.PHONY: mwaa-teardown
mwaa-teardown: venv ## empty STACK's buckets and delete the stack (asks first)
	@$(PY) -m mwaa teardown --stack "$(STACK)"

.PHONY: mwaa-rehearse
mwaa-rehearse: venv ## rehearse the MWAA deployment on Docker: the bundle, the template's secrets, the real workbook
	@$(PY) -m pytest tests/mwaa

.PHONY: clean
clean: ## stop the stack and delete its state and the virtualenvs
	@if [ -x $(PY) ]; then $(PY) -m devstack clean; fi
	rm -rf .devstack $(VENV) $(DBT_VENV) .tools $(DBT_DIR)/target $(DBT_DIR)/logs
