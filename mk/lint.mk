# Ecosystem lint: Helm 3 + Helm 4, chart-testing, kubeconform (strict, offline schemas),
# istioctl analyze (offline). Every tool is pinned and built into bin/ through the Go module
# proxy; generated schemas are cached under .cache/ (gitignored).

HELM3_VERSION       ?= v3.22.0
CT_VERSION          ?= v3.14.0
KUBECONFORM_VERSION ?= v0.8.0
# istio.io/istio tags ("1.29.6") are not semver, so the Go module proxy only serves
# pseudo-versions of the commits it has; this is master shortly after the 1.30 branch cut
# (VERSION file: 1.31). See tools/ecosystem/README.md.
ISTIO_MODULE_VERSION ?= v0.0.0-20260423205519-b01690e6db7d
ISTIOCTL_BUILD_VERSION ?= 1.31-dev+b01690e6db7d
# Kubernetes releases whose OpenAPI spec (shipped in the k8s.io/kubernetes module) becomes
# the JSON schemas kubeconform validates against: the oldest supported and the newest.
K8S_SCHEMA_VERSIONS ?= v1.29.6 v1.36.3

# Go implementation of Lua 5.1 that Argo CD embeds (same version as Argo CD's go.mod), to
# run the RayCluster health check the way Argo CD does.
GOPHER_LUA_VERSION ?= v1.1.2
# GitOps CRDs for kubeconform, from the controllers' own Go modules.
ARGOCD_VERSION                 ?= v3.5.7
FLUX_HELM_CONTROLLER_VERSION   ?= v1.6.4
FLUX_SOURCE_CONTROLLER_VERSION ?= v1.9.5

HELM3       := $(BIN)/helm3/helm
CT          := $(BIN)/ct
KUBECONFORM := $(BIN)/kubeconform
ISTIOCTL    := $(BIN)/istioctl
GLUA        := $(BIN)/glua
CACHE       := $(ROOT)/.cache
SCHEMAS     := $(CACHE)/schemas
SHARED_CRDS ?= $(abspath $(ROOT)/../shared/crds)
ECO         := $(ROOT)/tools/ecosystem

export MESHRAY_HELM3 := $(HELM3)
export MESHRAY_SCHEMAS := $(SCHEMAS)
export MESHRAY_SHARED_CRDS := $(SHARED_CRDS)

.PHONY: lint lint-setup lint-tools lint-schemas lint-helm lint-ct lint-py lint-ecosystem

lint-tools: $(STAMPS)/helm3-$(HELM3_VERSION) $(STAMPS)/ct-$(CT_VERSION) \
	$(STAMPS)/kubeconform-$(KUBECONFORM_VERSION) $(STAMPS)/istioctl-$(ISTIO_MODULE_VERSION) \
	$(STAMPS)/glua-$(GOPHER_LUA_VERSION) $(STAMPS)/checkov

# checkov (static scanner of the Ray pod templates, tests/ecosystem/test_scanner_checkov.py) lives in its
# own virtualenv under .cache/: its dependencies pin packaging below what pytest needs. The
# version is pinned in the script (CHECKOV_VERSION), which the stamp follows.
$(STAMPS)/checkov: $(ECO)/checkov_scan.py | venv
	mkdir -p $(STAMPS)
	$(PY) $(ECO)/checkov_scan.py install
	touch $@

lint-setup: venv $(HELM) lint-tools lint-schemas ## install lint tools into bin/ and generate schemas

# Helm 3 takes its default Kubernetes version (.Capabilities.KubeVersion, checked against the
# chart's kubeVersion) from -ldflags; a plain `go install` leaves it at v1.20.0 and every
# render fails `kubeVersion: >=1.23`. Set it as Helm's own Makefile does: from the client-go
# minor version in Helm's go.mod (v0.37 -> Kubernetes 1.37).
$(STAMPS)/helm3-$(HELM3_VERSION): | venv
	mkdir -p $(BIN)/helm3 $(STAMPS)
	minor=$$(go mod download -json helm.sh/helm/v3@$(HELM3_VERSION) | $(PY) -c 'import json,re,sys; \
	  mod=open(json.load(sys.stdin)["GoMod"]).read(); \
	  print(re.search(r"k8s.io/client-go v0\.(\d+)\.", mod).group(1))') && \
	GOBIN=$(BIN)/helm3 go install -ldflags "-s -w \
	  -X helm.sh/helm/v3/internal/version.version=$(HELM3_VERSION) \
	  -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 \
	  -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$$minor \
	  -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
	  -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$$minor" \
	  helm.sh/helm/v3/cmd/helm@$(HELM3_VERSION)
	touch $@

# `go install ct@version` aborts: it reads the module's version list to look for a
# deprecation notice, and the proxy refuses that list for chart-testing. Downloading the exact
# version and building it as the main module gives the same binary (same go.mod/go.sum).
$(STAMPS)/ct-$(CT_VERSION):
	mkdir -p $(STAMPS)
	dir=$$(go mod download -json github.com/helm/chart-testing/v3@$(CT_VERSION) | $(PY) -c 'import json,sys; print(json.load(sys.stdin)["Dir"])') && \
	  cd $$dir && GOBIN=$(BIN) GOFLAGS=-mod=readonly go install \
	  -ldflags "-X github.com/helm/chart-testing/v3/ct/cmd.Version=$(CT_VERSION)" ./ct
	touch $@

$(STAMPS)/kubeconform-$(KUBECONFORM_VERSION):
	mkdir -p $(STAMPS)
	GOBIN=$(BIN) go install github.com/yannh/kubeconform/cmd/kubeconform@$(KUBECONFORM_VERSION)
	touch $@

# `go install istioctl@version` fails on the sum database (it has no entry for some of Istio's
# pseudo-versioned dependencies); building inside the downloaded module verifies them against
# Istio's own go.sum instead.
$(STAMPS)/istioctl-$(ISTIO_MODULE_VERSION): | venv
	mkdir -p $(STAMPS)
	dir=$$(go mod download -json istio.io/istio@$(ISTIO_MODULE_VERSION) | $(PY) -c 'import json,sys; print(json.load(sys.stdin)["Dir"])') && \
	  cd $$dir && GOBIN=$(BIN) GOFLAGS=-mod=readonly go install -trimpath \
	  -ldflags "-s -w -X istio.io/istio/pkg/version.buildVersion=$(ISTIOCTL_BUILD_VERSION)" \
	  ./istioctl/cmd/istioctl
	touch $@

$(STAMPS)/glua-$(GOPHER_LUA_VERSION):
	mkdir -p $(STAMPS)
	GOBIN=$(BIN) go install github.com/yuin/gopher-lua/cmd/glua@$(GOPHER_LUA_VERSION)
	touch $@

# ---- schemas -------------------------------------------------------------------------------
# CRD sets: from ../shared/crds/<set>/ when that folder exists (this workplace), else from the
# Go module that ships the same file (byte-identical where both could be compared).
# Gateway API: the standard channel of sigs.k8s.io/gateway-api (TLSRoute is in it since
# v1.5.0); only from the module (tools/controlplane/controlplane.py loads the same files).
CRD_SETS := istio-1.21.1 istio-1.29.6 kuberay-v1.1.0 kuberay-v1.7.0 gateway-api-v1.5.0
CRD_MODULE_istio-1.21.1   := istio.io/api@v1.21.1 kubernetes/customresourcedefinitions.gen.yaml
CRD_MODULE_istio-1.29.6   := istio.io/api@v1.29.6 kubernetes/customresourcedefinitions.gen.yaml
CRD_MODULE_kuberay-v1.1.0 := github.com/ray-project/kuberay/ray-operator@v1.1.0 config/crd/bases/ray.io_rayclusters.yaml
CRD_MODULE_kuberay-v1.7.0 := github.com/ray-project/kuberay/ray-operator@v1.7.0 config/crd/bases/ray.io_rayclusters.yaml
GATEWAY_API_CRDS := $(foreach k,gateways httproutes grpcroutes tlsroutes referencegrants,config/crd/standard/gateway.networking.k8s.io_$(k).yaml)
CRD_MODULE_gateway-api-v1.5.0 := sigs.k8s.io/gateway-api@v1.5.0 $(GATEWAY_API_CRDS)
SCHEMA_STAMP := $(SCHEMAS)/.stamps
SCHEMA_DEPS  := $(ECO)/schemas.py | venv
GEN          := $(PY) $(ECO)/schemas.py

lint-schemas: $(foreach v,$(K8S_SCHEMA_VERSIONS),$(SCHEMA_STAMP)/k8s-$(v)) \
	$(foreach s,$(CRD_SETS),$(SCHEMA_STAMP)/crd-$(s)) \
	$(SCHEMA_STAMP)/argocd-$(ARGOCD_VERSION) \
	$(SCHEMA_STAMP)/fluxcd-helm-$(FLUX_HELM_CONTROLLER_VERSION) \
	$(SCHEMA_STAMP)/fluxcd-source-$(FLUX_SOURCE_CONTROLLER_VERSION)

$(SCHEMA_STAMP)/k8s-%: $(SCHEMA_DEPS)
	rm -rf $(SCHEMAS)/k8s-$*
	$(GEN) k8s --module k8s.io/kubernetes@$* --spec api/openapi-spec/swagger.json \
	  --out $(SCHEMAS)/k8s-$* --report
	mkdir -p $(@D) && touch $@

# A KubeRay set also holds that release's RayJob CRD (workload.kind=RayJob renders one): from
# ../shared/kuberay's source archive when it has the release (v1.7.0, whose module zip this
# machine's proxy refuses), else from the ray-operator module (v1.1.0 is served; a full proxy
# serves every release).
SHARED_KUBERAY ?= $(abspath $(ROOT)/../shared/kuberay)
RAYJOB_CRD     := config/crd/bases/ray.io_rayjobs.yaml

$(SCHEMA_STAMP)/crd-%: $(SCHEMA_DEPS)
	rm -rf $(SCHEMAS)/$*
	extra=""; \
	case "$*" in kuberay-*) \
	  v=$(patsubst kuberay-%,%,$*); tarball="$(SHARED_KUBERAY)/kuberay-$$v-ray-operator.tar.gz"; \
	  if [ -f "$$tarball" ]; then \
	    mkdir -p $(CACHE)/kuberay-src && tar xzf "$$tarball" -C $(CACHE)/kuberay-src; \
	    extra=$(CACHE)/kuberay-src/kuberay-$$v/ray-operator/$(RAYJOB_CRD); \
	  else \
	    dir=$$(cd /tmp && GOFLAGS=-mod=mod go mod download -json github.com/ray-project/kuberay/ray-operator@$$v \
	      | $(PY) -c 'import json, sys; print(json.load(sys.stdin)["Dir"])') || exit 1; \
	    extra=$$dir/$(RAYJOB_CRD); \
	  fi;; \
	esac; \
	if [ -d "$(SHARED_CRDS)/$*" ]; then \
	  $(GEN) crds $(SHARED_CRDS)/$*/*.yaml $$extra --out $(SCHEMAS)/$* --report; \
	else \
	  set -- $(CRD_MODULE_$*); test -n "$$1" || { echo "unknown CRD set $*"; exit 1; }; \
	  mod=$$1; shift; $(GEN) crds --module $$mod "$$@" --out $(SCHEMAS)/$* --report; \
	  test -z "$$extra" || $(GEN) crds $$extra --out $(SCHEMAS)/$*.rayjob --report; \
	  test -z "$$extra" || { cp -r $(SCHEMAS)/$*.rayjob/. $(SCHEMAS)/$*/ && rm -rf $(SCHEMAS)/$*.rayjob; }; \
	fi
	mkdir -p $(@D) && touch $@

$(SCHEMA_STAMP)/argocd-%: $(SCHEMA_DEPS)
	rm -rf $(SCHEMAS)/argocd-$*
	$(GEN) crds --module github.com/argoproj/argo-cd/v3@$* \
	  manifests/crds/application-crd.yaml manifests/crds/appproject-crd.yaml \
	  --out $(SCHEMAS)/argocd-$* --report
	mkdir -p $(@D) && touch $@

$(SCHEMA_STAMP)/fluxcd-helm-%: $(SCHEMA_DEPS)
	rm -rf $(SCHEMAS)/fluxcd-helm-$*
	$(GEN) crds --module github.com/fluxcd/helm-controller@$* \
	  config/crd/bases/helm.toolkit.fluxcd.io_helmreleases.yaml \
	  --out $(SCHEMAS)/fluxcd-helm-$* --report
	mkdir -p $(@D) && touch $@

$(SCHEMA_STAMP)/fluxcd-source-%: $(SCHEMA_DEPS)
	rm -rf $(SCHEMAS)/fluxcd-source-$*
	$(GEN) crds --module github.com/fluxcd/source-controller@$* \
	  config/crd/bases/source.toolkit.fluxcd.io_gitrepositories.yaml \
	  config/crd/bases/source.toolkit.fluxcd.io_helmrepositories.yaml \
	  config/crd/bases/source.toolkit.fluxcd.io_ocirepositories.yaml \
	  --out $(SCHEMAS)/fluxcd-source-$* --report
	mkdir -p $(@D) && touch $@

# ---- lint ----------------------------------------------------------------------------------
LINT_VALUES = $(sort $(wildcard $(CHART)/ci/*-values.yaml) $(wildcard values-examples/*.yaml))

lint: lint-setup lint-py lint-helm lint-ct lint-ecosystem lint-helm3-suite ## helm lint (Helm 3+4), ct, kubeconform, istioctl analyze, Helm 3 test run

lint-py: venv
	$(VENV)/bin/ruff check tools tests
	$(VENV)/bin/ruff format --check tools/ecosystem $(wildcard tests/ecosystem/*ecosystem*.py tests/ecosystem/test_gitops*.py)
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict tools/ecosystem
	$(VENV)/bin/mypy --strict tools/mutants tools/dev

lint-helm: lint-setup
	@set -e; for h in $(HELM) $(HELM3); do \
	  echo "== $$($$h version --short) lint --strict (defaults + $(words $(LINT_VALUES)) values files)"; \
	  $$h lint --strict --quiet $(CHART); \
	  for f in $(LINT_VALUES); do $$h lint --strict --quiet $(CHART) -f $$f || { echo "helm lint failed: $$f"; exit 1; }; done; \
	done

# ct finds helm, yamllint and yamale on PATH; run it under both Helm majors.
lint-ct: lint-setup
	@set -e; for hdir in $(BIN) $(BIN)/helm3; do \
	  echo "== ct lint with $$(PATH=$$hdir:$$PATH helm version --short)"; \
	  PATH=$$hdir:$(VENV)/bin:$$PATH $(CT) lint --config ct.yaml --all; \
	done

lint-ecosystem: lint-setup
	$(PY) $(ECO)/check_renders.py --helm $(HELM) --bin $(BIN) --schemas $(SCHEMAS)

# The suites that render through $MESHRAY_HELM (the chart, validate, the CLI) again with Helm 3,
# on both cores; the audit's tests read manifests, and tests/ecosystem runs Helm 3 itself.
lint-helm3-suite: lint-setup
	MESHRAY_HELM=$(HELM3) $(PY) -m pytest -q -p no:cacheprovider -n auto tests/render tests/validate tests/cli

.PHONY: passthrough-schema
passthrough-schema: venv lint-schemas ## regenerate values.schema.yamale's pod-spec block from Kubernetes' definitions
	$(PY) $(ECO)/passthrough_schema.py --schemas $(SCHEMAS) $(CHART)/values.schema.yamale
	$(VENV)/bin/meshray schema
	$(VENV)/bin/meshray docs
