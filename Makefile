# FMS Platform — single entry point. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
export FMS_CACHE_DIR ?= /var/cache/fms-platform
PROFILE ?= auto
ENV ?= primary
VENV := .venv
PY := $(VENV)/bin/python
# The venv is shared by every clone (keyed by requirements); this checkout's jobs/ and
# scripts/ come first on the path so tests and tools never import another clone's editable install.
export PYTHONPATH := $(CURDIR)/jobs:$(CURDIR)/scripts$(if $(PYTHONPATH),:$(PYTHONPATH))
# The project's tools (scripts/fms_tools): console scripts `make bootstrap` installs into the venv.
LAB := $(VENV)/bin/fms-lab
# Terraform from the offline mirror when one is available, else the system one.
TF_ENV = eval "$$(bash scripts/bootstrap/terraform_env.sh)"
PYTEST = $(TF_ENV); $(VENV)/bin/pytest

.PHONY: help bootstrap lab lab-converge lab-infra lab-down lab-status test test-static test-terraform test-unit \
        test-integration test-monitoring test-property test-property-long test-lab test-offline lint fmt lock bench chaos drill \
        predict-eval docs

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

bootstrap: ## Install Debian packages, the Python env and the Terraform toolchain
	@bash scripts/bootstrap/system_packages.sh
	@bash scripts/bootstrap/python_env.sh
	@$(TF_ENV); terraform version | sed -n 1p

lab: bootstrap ## Bring up the local lab (emulated AWS + nspawn hosts), converge site.yml, run the pipeline
	@$(TF_ENV); $(LAB) up --env $(ENV) --profile $(PROFILE)
	@$(LAB) converge --env $(ENV)

lab-converge: ## Run ansible/site.yml on the lab hosts again (idempotent)
	@$(LAB) converge --env $(ENV)

lab-infra: ## testinfra (tests/infra) against the running lab
	@$(LAB) testinfra --env $(ENV)

lab-down: ## Tear the lab down, leaving nothing running
	@$(TF_ENV); $(LAB) down

lab-status: ## Show every lab host with role, IP, state and reachability
	@$(LAB) status

TIMED = bash scripts/bootstrap/timed.sh
# Inside `make test` the suites that are neither timing-sensitive nor on the critical path run
# niced (YIELD_NICE): they take the CPU the lab leaves while it waits on its hosts. Not the
# terraform suite: a starved AWS emulator makes the provider's requests time out and retry
# (InvalidPermission.Duplicate on a rule the first request created).
YIELDING = $(if $(YIELD_NICE),FMS_TEST_NICE=$(YIELD_NICE) )$(TIMED)

test: bootstrap ## Run every test: the lab suite beside the others (it mostly waits on its hosts); prints time per suite
	@rm -rf build/test-times
	@rc=0; $(MAKE) --no-print-directory -k -j2 --output-sync=target YIELD_NICE=10 test-lab test-offline || rc=$$?; \
	  bash scripts/bootstrap/test_times.sh; exit $$rc

test-offline: test-static test-terraform test-unit test-property test-integration test-monitoring ## Every suite but the lab's

test-static: ## Linters and static checks (ruff, yamllint, terraform fmt/validate, checkov)
	@$(TF_ENV); $(YIELDING) static $(VENV)/bin/pytest --durations=15 tests/static

test-terraform: ## terraform test + a real apply/plan/destroy of both stacks against moto
	@$(TF_ENV); $(TIMED) terraform $(VENV)/bin/pytest --durations=15 tests/terraform

test-unit: ## Pure unit tests (quality rules, simulator, helpers)
	@$(TF_ENV); $(YIELDING) unit $(VENV)/bin/pytest --durations=15 tests/unit

test-property: ## Property tests of the quality rules: Spark vs reference on >= 10,000 generated messages (fixed seed)
	@$(TF_ENV); $(YIELDING) property $(VENV)/bin/pytest --durations=15 -rP tests/property

test-property-long: ## The same properties, a longer random search (FMS_HYPOTHESIS_PROFILE=long, ~30x the examples)
	@FMS_HYPOTHESIS_PROFILE=long $(PYTEST) -rP tests/property

test-integration: ## Loopback integration: real Kafka broker + local Spark
	@$(TF_ENV); $(TIMED) integration $(VENV)/bin/pytest --durations=15 tests/integration

test-monitoring: ## promtool rule tests, amtool config checks, dashboard checks
	@$(TF_ENV); $(TIMED) monitoring $(VENV)/bin/pytest --durations=15 tests/monitoring

test-lab: ## Lab bring-up, convergence, testinfra, pipeline and alert drills (needs root; -rP prints the measured figures)
	@$(TF_ENV); $(TIMED) lab $(VENV)/bin/pytest --durations=30 -rP -m "not chaos and not drill" tests/lab

chaos: bootstrap ## A fresh lab, then under load: a broker setting changed via site.yml, broker SIGKILL x5, a broker cut off 60 s, stream driver SIGKILL x3, a DataNode down for minutes, the conservation audit
	@$(TF_ENV); $(TIMED) chaos $(VENV)/bin/pytest --durations=30 -rP tests/lab/test_lab_converge.py \
	  tests/lab/test_lab_faults.py tests/lab/test_lab_pipeline.py \
	  -k "setting_changed or sigkills or cut_off or datanode_down or audit_conserves_every_raw_record"

drill: bootstrap ## A fresh lab, then the DR drill: DR converged as a standby, MirrorMaker 2 from primary, the primary region cut off, DR promoted (RTO, RPO, conservation), failback to the primary (demote, reverse MM2, promote: RTO, RPO, audit), the pre-check without the peering; the summary JSON last
	@rm -f build/drill/dr_failover.json
	@$(TF_ENV); rc=0; $(TIMED) drill $(VENV)/bin/pytest --durations=30 -rP -m drill tests/lab || rc=$$?; \
	  echo "timeline: build/drill/dr_failover.png"; \
	  $(PY) -c 'import json,sys; d=json.load(open(sys.argv[1])); d.pop("events",None); print(json.dumps(d))' \
	    build/drill/dr_failover.json 2>/dev/null || echo '{"error": "the failover drill wrote no summary"}'; exit $$rc

lint: ## Ruff and yamllint only
	@$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/yamllint -s .

fmt: ## Format Terraform and Python sources
	@$(TF_ENV); terraform fmt -recursive terraform
	@$(VENV)/bin/ruff format .

docs: ## Write the READMEs of roles/* and terraform/modules/* (generated sections only; tests/static checks them)
	@$(VENV)/bin/fms-moduledocs

lock: ## Re-resolve requirements.in into the fully pinned requirements.txt
	@rm -rf build/lock-venv && python3 -m venv build/lock-venv
	@build/lock-venv/bin/pip install -q -r requirements.in
	@(echo "# Generated from requirements.in by 'make lock' (pip freeze of a clean venv). Do not edit by hand."; \
	  build/lock-venv/bin/pip freeze) > requirements.txt

bench: bootstrap ## Pipeline benchmark on the running lab (build/bench/*.json + PNG); BENCH_ARGS="--mode loopback" runs it locally
	@$(VENV)/bin/fms-bench --lab-env $(ENV) $(BENCH_ARGS)

PREDICT_SCALE ?= full
PREDICT_MASTER ?= local[2]
predict-eval: bootstrap ## Failure prediction, offline: train on a simulated fleet, evaluate on held-out fleets + public benchmark (last line JSON; report in docs/)
	@nice -n $${FMS_PREDICT_NICE:-10} $(PY) -m fms_jobs.prediction eval --scale $(PREDICT_SCALE) --master '$(PREDICT_MASTER)' \
	  --out build/predict-eval $(if $(filter full,$(PREDICT_SCALE)),--docs docs/failure-prediction.md)
