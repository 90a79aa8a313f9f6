# The real Istio control plane in the local cluster (tests/mesh, pytest marker `mesh`): istiod
# (pilot-discovery) built from the same istio.io/istio pseudo-version as bin/istioctl, run out of
# cluster against the local API server, and meshray-xds (tools/cluster/xds), an ADS client that
# asks istiod for exactly the xDS it sends one Pod's sidecar. See docs/mesh-e2e.md.
#
# meshray-xds is built inside a writable copy of the Istio module (go build refuses overlays
# into the module cache), so it compiles against Istio's own go.sum and Envoy API versions.

ISTIO_SRC := $(CACHE)/istio-src-$(ISTIO_MODULE_VERSION)
MESH_TIMEOUT ?= 1200
MESH_PYTEST_ARGS ?=

.PHONY: mesh-bins mesh-e2e bench-mesh

mesh-bins: cluster-bins $(STAMPS)/pilot-discovery-$(ISTIO_MODULE_VERSION) $(BIN)/meshray-xds ## build istiod and the xDS client into bin/

$(STAMPS)/pilot-discovery-$(ISTIO_MODULE_VERSION): | venv
	mkdir -p $(STAMPS)
	dir=$$(go mod download -json istio.io/istio@$(ISTIO_MODULE_VERSION) | $(PY) -c 'import json,sys; print(json.load(sys.stdin)["Dir"])') && \
	  cd $$dir && GOFLAGS=-mod=readonly go build -trimpath \
	  -ldflags "-s -w -X istio.io/istio/pkg/version.buildVersion=$(ISTIOCTL_BUILD_VERSION)" \
	  -o $(BIN)/pilot-discovery ./pilot/cmd/pilot-discovery
	touch $@

$(BIN)/meshray-xds: $(ROOT)/tools/cluster/xds/main.go | venv
	if [ ! -f $(ISTIO_SRC)/go.mod ]; then \
	  dir=$$(go mod download -json istio.io/istio@$(ISTIO_MODULE_VERSION) | $(PY) -c 'import json,sys; print(json.load(sys.stdin)["Dir"])') && \
	  rm -rf $(ISTIO_SRC).tmp && cp -r $$dir $(ISTIO_SRC).tmp && chmod -R u+w $(ISTIO_SRC).tmp && \
	  mv $(ISTIO_SRC).tmp $(ISTIO_SRC); \
	fi
	mkdir -p $(ISTIO_SRC)/meshrayxds && cp $< $(ISTIO_SRC)/meshrayxds/main.go
	cd $(ISTIO_SRC) && GOFLAGS=-mod=readonly go build -trimpath -o $@ ./meshrayxds

mesh-e2e: setup lint-setup cluster-deps mesh-bins ## what the real istiod programs for the Ray pods' sidecars (L7, STRICT mTLS)
	timeout $(MESH_TIMEOUT) $(PY) -m pytest -m mesh tests/mesh -p no:cacheprovider -q -rfEs $(MESH_PYTEST_ARGS)

# Not a test: the sidecar config istiod sends a Ray worker Pod (LDS+CDS+RDS+EDS bytes, listeners,
# clusters) per worker-port count x replicas x rayTls, with ratios (tools/bench/bench_mesh.py).
BENCH_MESH_ARGS ?=
bench-mesh: setup cluster-deps mesh-bins ## Istio config size of a Ray sidecar vs worker ports, replicas and rayTls (real istiod)
	$(PY) tools/bench/bench_mesh.py $(BENCH_MESH_ARGS)
