# Every entry point the README names. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup wasm wasm-check controlplane cluster cluster-down node node-down image flux flux-down kind-e2e \
	demo demo-down lint test test-unit test-e2e bench fuzz crd parser-artifact postgres-deps postgres postgres-down \
	bench-history

$(BIN)/packagestats: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

setup: $(BIN)/packagestats  ## a virtualenv with the package and its test tools

wasm:  ## rebuild src/packagestats/parser.wasm (installs Debian's Rust-for-wasm packages if missing)
	bash wasm/build.sh

wasm-check:  ## rebuild the parser and fail if it differs from the committed one
	bash wasm/build.sh --check

controlplane: setup  ## build kube-apiserver, etcd, kubectl and helm into ~/.cache/packagestats (once)
	$(BIN)/python -m hack.controlplane build

cluster: setup  ## start a local control plane; prints `export KUBECONFIG=...`
	@$(BIN)/python -m hack.controlplane up

cluster-down:
	@$(BIN)/python -m hack.controlplane down

node: setup  ## a real one-node cluster (kubelet, containerd 2.x, runc); prints `export KUBECONFIG=...`
	@$(BIN)/python -m hack.node up

node-down:  ## stop every process of `make node`, unmount what it mounted, remove its files
	@$(BIN)/python -m hack.flux down
	@$(BIN)/python -m hack.node down

image: setup  ## build the image from the Dockerfile (buildah) and load it into the node; prints its reference
	@$(BIN)/python -m hack.images load

flux: setup  ## Flux's controllers and an OCI registry on the running node; prints PACKAGESTATS_OCI_REGISTRY
	@$(BIN)/python -m hack.flux up

flux-down:
	@$(BIN)/python -m hack.flux down

# The parser as a Flux OCI artifact: parser.wasm and its self-test page (wasm/artifact.py checks it as the
# operator will), pushed to $(PACKAGESTATS_OCI_REGISTRY)/$(PARSER_REPOSITORY):$(PARSER_TAG).
PARSER ?= src/packagestats/parser.wasm
PARSER_REPOSITORY ?= packagestats/parser
PARSER_TAG ?= latest
parser-artifact: setup  ## pack PARSER (default: the built-in module) as a Flux OCI artifact and push it
	@test -n "$(PACKAGESTATS_OCI_REGISTRY)" || { echo "set PACKAGESTATS_OCI_REGISTRY (make flux prints it)" >&2; exit 2; }
	@dir=$$(mktemp -d) && trap 'rm -rf "$$dir"' EXIT && \
	$(BIN)/python wasm/artifact.py "$$dir/artifact" --parser "$(PARSER)" && \
	$(BIN)/python -m hack.oci push "$$dir/artifact" "$(PACKAGESTATS_OCI_REGISTRY)/$(PARSER_REPOSITORY):$(PARSER_TAG)" \
	  --revision "$(PARSER_TAG)@sha256:$$(sha256sum "$(PARSER)" | cut -d' ' -f1)"

# On a laptop with Docker and kind (not on this project's machines: no Docker engine): the same e2e tests.
KIND_CLUSTER ?= packagestats-e2e
E2E_IMAGE ?= localhost/packagestats:e2e
kind-e2e: setup  ## kind cluster + docker build + tests/e2e through KUBECONFIG
	kind get clusters | grep -qx $(KIND_CLUSTER) || kind create cluster --name $(KIND_CLUSTER)
	docker build -t $(E2E_IMAGE) .
	kind load docker-image $(E2E_IMAGE) --name $(KIND_CLUSTER)
	kind get kubeconfig --name $(KIND_CLUSTER) > .kind-kubeconfig
	KUBECONFIG=$(CURDIR)/.kind-kubeconfig PACKAGESTATS_E2E_IMAGE=$(E2E_IMAGE) $(BIN)/pytest tests/e2e

test-e2e: setup  ## only the node, image, Helm and Flux tests
	$(BIN)/pytest tests/e2e

demo: setup  ## control plane + GitHub stand-in + operator + a sample PackageStats
	$(BIN)/python -m hack.demo up

demo-down:
	$(BIN)/python -m hack.demo down

crd: setup  ## regenerate crds/ from src/packagestats/api.py
	$(BIN)/packagestats crd > crds/packagestats.dev_packagestats.yaml
	cp crds/packagestats.dev_packagestats.yaml charts/packagestats/crds/

lint: setup
	$(BIN)/ruff check src tests hack benchmarks
	$(BIN)/mypy

test-unit: setup
	$(BIN)/pytest tests/unit

postgres-deps:  ## Debian's PostgreSQL binaries for the history database tests (apt-get install if missing)
	bash hack/postgres-deps.sh

postgres: setup postgres-deps  ## a throwaway PostgreSQL on loopback; prints `export PACKAGESTATS_HISTORY_URL=...`
	@$(BIN)/python -m hack.postgres up

postgres-down:
	@$(BIN)/python -m hack.postgres down

test: setup controlplane postgres-deps  ## everything CI runs
	$(MAKE) lint
	$(MAKE) wasm-check
	cd wasm && cargo clippy --quiet --all-targets --locked -- -D warnings && cargo test --quiet --locked
	$(BIN)/pytest tests

bench-history: setup postgres-deps  ## benchmarks/history_db.py: the history database on SQLite and PostgreSQL
	$(BIN)/python benchmarks/history_db.py

bench: setup  ## benchmarks/parser.py and benchmarks/operator.py (figures, no assertions)
	$(BIN)/python benchmarks/parser.py
	$(BIN)/python benchmarks/operator.py

fuzz:  ## a million inputs through all three page parsers (cargo-fuzz, installed if missing)
	command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
	bash wasm/fuzz/run.sh 1000000
