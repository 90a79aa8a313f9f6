# The local control plane (tests/cluster, pytest marker `cluster`): etcd, kube-apiserver,
# kube-controller-manager and the KubeRay operator as plain processes on loopback, no containers,
# no kubelet (tools/controlplane/kubelet.py stands in for it). See docs/cluster-e2e.md.
#
# kube-apiserver / kube-controller-manager / kubectl come from k8s.io/kubernetes through the
# wrapper module tools/controlplane/k8s (its go.mod pins the version; `go install ...@v` cannot build
# kubernetes, whose go.mod points its staging modules at ./staging). The KubeRay operator comes
# from its own module: the proxy serves ray-operator v1.1.0 ... v1.6.2 but refuses v1.7.0's
# source, @latest and the version list, so `go install` (which asks for deprecation notices)
# aborts; building inside the downloaded module works, against the module's own go.sum.
# Builds are cached in bin/ (gitignored) and Go's build cache; docs/cluster-e2e.md has the build times.

KUBERAY_VERSIONS  ?= v1.1.0 v1.6.2
# CNCF distribution: the OCI registry `helm push` / `helm install oci://` are tested against.
DISTRIBUTION_VERSION ?= v3.0.0
K8S_MODULE_DIR    := $(ROOT)/tools/controlplane/k8s
K8S_VERSION       := $(shell awk '$$1 == "k8s.io/kubernetes" {print $$2; exit}' $(K8S_MODULE_DIR)/go.mod)
K8S_MINOR         := $(word 2,$(subst ., ,$(K8S_VERSION)))
K8S_LDFLAGS       := -s -w \
  -X k8s.io/component-base/version.gitVersion=$(K8S_VERSION) \
  -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(K8S_MINOR) \
  -X k8s.io/client-go/pkg/version.gitVersion=$(K8S_VERSION) \
  -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$(K8S_MINOR)
CLUSTER_DIR       ?= $(ROOT)/.cache/cluster/dev
CLUSTER_OPERATOR  ?= v1.6.2
CLUSTER_TIMEOUT   ?= 2400
CLUSTER_PYTEST_ARGS ?=
CLUSTER_BINS := $(STAMPS)/k8s-$(K8S_VERSION) $(foreach v,$(KUBERAY_VERSIONS),$(BIN)/kuberay-operator-$(v)) \
  $(STAMPS)/registry-$(DISTRIBUTION_VERSION)

export MESHRAY_KUBERAY_VERSIONS := $(KUBERAY_VERSIONS)

.PHONY: cluster-bins cluster-deps cluster-up cluster-down cluster-e2e

cluster-deps: ## install etcd (Debian etcd-server), openssl and gnupg if missing
	@missing=""; \
	command -v etcd >/dev/null || missing="$$missing etcd-server"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	command -v gpg >/dev/null || missing="$$missing gnupg"; \
	if [ -n "$$missing" ]; then \
	  echo "cluster-deps: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

cluster-bins: $(CLUSTER_BINS) ## build kube-apiserver, kube-controller-manager, kubectl, KubeRay operators, an OCI registry into bin/

$(STAMPS)/k8s-$(K8S_VERSION): $(K8S_MODULE_DIR)/go.mod $(K8S_MODULE_DIR)/go.sum
	mkdir -p $(STAMPS)
	cd $(K8S_MODULE_DIR) && GOFLAGS=-mod=readonly go build -trimpath -ldflags "$(K8S_LDFLAGS)" -o $(BIN)/ \
	  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
	  k8s.io/kubernetes/cmd/kubectl
	touch $@

$(BIN)/kuberay-operator-%: | venv
	mkdir -p $(BIN)
	dir=$$(go mod download -json github.com/ray-project/kuberay/ray-operator@$* | $(PY) -c 'import json,sys; print(json.load(sys.stdin)["Dir"])') && \
	  cd $$dir && GOFLAGS=-mod=readonly go build -trimpath -ldflags "-s -w" -o $@.tmp . && mv $@.tmp $@

# Built inside the downloaded module like the operators, against the module's own go.sum.
$(STAMPS)/registry-$(DISTRIBUTION_VERSION): | venv
	mkdir -p $(STAMPS)
	dir=$$(go mod download -json github.com/distribution/distribution/v3@$(DISTRIBUTION_VERSION) | $(PY) -c 'import json,sys; print(json.load(sys.stdin)["Dir"])') && \
	  cd $$dir && GOFLAGS=-mod=readonly go build -trimpath -ldflags "-s -w" -o $(BIN)/registry ./cmd/registry
	touch $@

cluster-up: setup cluster-deps cluster-bins ## start a local control plane + operator (CLUSTER_OPERATOR) for debugging by hand
	$(PY) tools/controlplane/controlplane.py up --dir $(CLUSTER_DIR) --operator $(CLUSTER_OPERATOR) --kubelet

cluster-down: ## stop what cluster-up started (only those processes)
	$(PY) tools/controlplane/controlplane.py down --dir $(CLUSTER_DIR)

cluster-e2e: setup lint-setup cluster-deps cluster-bins ## helm install/upgrade/rollback/uninstall on a real API server with the real KubeRay operators
	timeout $(CLUSTER_TIMEOUT) $(PY) -m pytest -m cluster tests/cluster -p no:cacheprovider -q -rfEs \
	  -n $(words $(KUBERAY_VERSIONS)) --dist loadgroup $(CLUSTER_PYTEST_ARGS)
