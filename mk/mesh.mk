# The real Istio control plane in the local cluster (tests/mesh, pytest marker `mesh`): istiod
# (pilot-discovery) built from the same istio.io/istio pseudo-version as bin/istioctl, run out of
# cluster against the local API server, and meshray-xds (tools/controlplane/xds), an ADS client that
# asks istiod for exactly the xDS it sends one Pod's sidecar (or, in ambient mode, ztunnel's
# workload addresses and authorizations, and a waypoint's listeners). See docs/mesh-e2e.md and
# docs/ambient.md.
#
# meshray-xds is built inside a writable copy of the Istio module (go build refuses overlays
# into the module cache), so it compiles against Istio's own go.sum and Envoy API versions.

ISTIO_SRC := $(CACHE)/istio-src-$(ISTIO_MODULE_VERSION)
MESH_TIMEOUT ?= 1800
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

$(BIN)/meshray-xds: $(ROOT)/tools/controlplane/xds/main.go | venv
	if [ ! -f $(ISTIO_SRC)/go.mod ]; then \
	  dir=$$(go mod download -json istio.io/istio@$(ISTIO_MODULE_VERSION) | $(PY) -c 'import json,sys; print(json.load(sys.stdin)["Dir"])') && \
	  rm -rf $(ISTIO_SRC).tmp && cp -r $$dir $(ISTIO_SRC).tmp && chmod -R u+w $(ISTIO_SRC).tmp && \
	  mv $(ISTIO_SRC).tmp $(ISTIO_SRC); \
	fi
	mkdir -p $(ISTIO_SRC)/meshrayxds && cp $< $(ISTIO_SRC)/meshrayxds/main.go
	cd $(ISTIO_SRC) && GOFLAGS=-mod=readonly go build -trimpath -o $@ ./meshrayxds

# The bench extra (matplotlib) too: tests/mesh/test_bench_mesh.py draws the plot, and in CI a
# missing plot fails rather than skips.
mesh-e2e: setup lint-setup cluster-deps mesh-bins $(STAMPS)/bench-extra ## what the real istiod programs for the Ray pods' sidecars (L7, STRICT mTLS)
	timeout $(MESH_TIMEOUT) $(PY) -m pytest -m mesh tests/mesh -p no:cacheprovider -q -rfEs $(MESH_PYTEST_ARGS)

# Not a test: the sidecar config istiod sends a Ray worker Pod and a Pod in another namespace
# (LDS+CDS+RDS+EDS bytes, listeners, clusters) per worker ports x replicas x rayTls x exportTo,
# for meshray and the KubeRay guide's YAML (tools/bench/bench_mesh.py); writes
# docs/mesh-cost.{json,md,png} (tests/cli/test_mesh_cost.py then wants tools/meshray/meshcost.py to
# match). BENCH_MESH_ARGS=--quick: a subset, into .cache/bench-mesh.json only.
BENCH_MESH_ARGS ?= --docs $(ROOT)/docs
bench-mesh: setup cluster-deps mesh-bins $(STAMPS)/bench-extra ## Istio config size of Ray and other sidecars vs worker ports, replicas, rayTls, exportTo (real istiod)
	$(PY) tools/bench/bench_mesh.py $(BENCH_MESH_ARGS)

$(STAMPS)/bench-extra: $(ROOT)/pyproject.toml | venv
	$(PY) -m pip install --quiet -e '$(ROOT)[bench]'
	mkdir -p $(STAMPS) && touch $@
