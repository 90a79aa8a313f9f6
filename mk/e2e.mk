# End-to-end proof of the port contract with real Ray (tests/e2e, pytest marker `e2e`).
# Needs root (network namespaces, nftables). Host packages come from the distribution's
# registry (e2e-deps); each Ray version gets its own venv under .cache/ from a pinned lock file
# (tests/e2e/requirements/ray-<version>.txt). Ray 2.10 ships wheels up to CPython 3.11 only.

E2E_RAY_VERSIONS ?= 2.60.0 2.10.0
E2E_PYTHON       ?= python3.11
E2E_CACHE        ?= $(ROOT)/.cache
E2E_LOCKS        := $(ROOT)/tests/e2e/requirements
E2E_TIMEOUT      ?= 2400
E2E_PYTEST_ARGS  ?=
E2E_VENV_STAMPS  := $(foreach v,$(E2E_RAY_VERSIONS),$(E2E_CACHE)/ray-$(v)/.installed)

export MESHRAY_E2E_RAY_VERSIONS := $(E2E_RAY_VERSIONS)
export MESHRAY_E2E_CACHE := $(E2E_CACHE)

.PHONY: e2e e2e-deps e2e-venvs sizing

e2e-deps: ## install the e2e suite's host packages (iproute2, nftables, tshark) if missing
	@missing=""; \
	command -v ip >/dev/null && command -v ss >/dev/null || missing="$$missing iproute2"; \
	command -v nft >/dev/null || missing="$$missing nftables"; \
	command -v unshare >/dev/null && command -v nsenter >/dev/null || missing="$$missing util-linux"; \
	command -v tshark >/dev/null || missing="$$missing tshark"; \
	if [ -n "$$missing" ]; then \
	  echo "e2e-deps: installing$$missing"; \
	  echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections 2>/dev/null || true; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

e2e-venvs: $(E2E_VENV_STAMPS) ## one venv per Ray version under .cache/ (pinned lock files)

$(E2E_CACHE)/ray-%/.installed: $(E2E_LOCKS)/ray-%.txt
	rm -rf $(E2E_CACHE)/ray-$*
	$(E2E_PYTHON) -m venv $(E2E_CACHE)/ray-$*
	$(E2E_CACHE)/ray-$*/bin/python -m pip install --quiet --upgrade pip
	$(E2E_CACHE)/ray-$*/bin/python -m pip install --quiet -r $<
	touch $@

# The suite starts its own local control plane (mk/cluster.mk builds it): etcd, kube-apiserver,
# kube-controller-manager and the KubeRay operator (E2E_OPERATOR), then helm-installs the chart.
E2E_OPERATOR ?= v1.6.2
export MESHRAY_E2E_OPERATOR := $(E2E_OPERATOR)

e2e: setup e2e-deps e2e-venvs cluster-deps cluster-bins ## real Ray from the real operator's Pods in firewalled netns, every values example (root)
	timeout $(E2E_TIMEOUT) $(PY) -m pytest -m e2e tests/e2e -p no:cacheprovider -q -rfEs $(E2E_PYTEST_ARGS)

# Worker-port sizing: the smallest worker range with which tasks + K actors + a job submission
# complete, for num-cpus 1, 2 and 4 (slow; not part of CI). Writes .cache/e2e/sizing.json.
SIZING_ARGS ?=
sizing: setup e2e-deps e2e-venvs ## measure the worker-port range Ray needs (num-cpus 1/2/4)
	$(PY) tools/sizing/measure.py --venv $(E2E_CACHE)/ray-$(firstword $(E2E_RAY_VERSIONS)) $(SIZING_ARGS)
