# meshray developer entry points. Every target that needs tools runs `setup` first, so a
# fresh checkout needs nothing but Python 3.10+, Go and make.
SHELL := /bin/bash
.DEFAULT_GOAL := help

ROOT      := $(abspath .)
BIN       := $(ROOT)/bin
STAMPS    := $(BIN)/.stamps
VENV      := $(ROOT)/.venv
PY        := $(VENV)/bin/python
CHART     := charts/meshray
RELEASE   ?= meshray
NAMESPACE ?= default
VALUES    ?=

# Pinned tool versions (installed into bin/ through the Go module proxy).
HELM_VERSION ?= v4.3.1
HELM         := $(BIN)/helm

export PATH := $(BIN):$(VENV)/bin:$(PATH)
export MESHRAY_HELM := $(HELM)

.PHONY: help setup venv render test check bench
help: ## list targets
	@grep -hE '^[a-zA-Z0-9_.-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

setup: venv $(HELM) ## create .venv and install pinned tools into bin/

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(HELM):
	mkdir -p $(BIN)
	GOBIN=$(BIN) go install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)

render: setup ## render the chart (VALUES=file) and print manifests plus the port table
	$(VENV)/bin/meshray render $(if $(VALUES),-f $(VALUES)) --namespace $(NAMESPACE) --release $(RELEASE) --ports-after

# The suite checks the chart with every ecosystem tool (kubeconform, istioctl, ct, Helm 3),
# so it installs them first (mk/lint.mk); their tests fail rather than skip when CI=true.
test: setup lint-setup ## run the test suite (what CI runs)
	$(PY) -m pytest -q -n auto

# The inner loop for people changing the chart: only the venv and Helm 4, and the fast tests
# that need no ecosystem tool (marker ecosystem left out; a test needing a tool skips outside
# CI, so CI is unset here). make test stays what CI runs.
check: setup ## quick inner loop: the fast tests that need only the venv and Helm 4
	env -u CI $(PY) -m pytest -q -n auto -m 'not e2e and not cluster and not mesh and not ecosystem'

bench: setup ## time validate + render + audit over every example against bare helm template
	$(PY) tools/bench/bench.py

# One planted bug at a time, each on a scratch copy, against the fast suite (docs/development.md).
.PHONY: mutants
mutants: setup ## plant each curated one-line bug (tools/mutants) and list the ones no fast test catches
	$(PY) tools/mutants/mutants.py $(MUTANT_ARGS)

-include mk/*.mk
