# kubeoc: the two commands a new user needs are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
KUBECONFIG_TESTBED := $(CURDIR)/.testbed/kubeconfig

.PHONY: help build dist completions readme test test-upstream standalone-check unit-test integration-test lint demo cluster-up cluster-down testbed-bins testbed-reload bench

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

build: ## release binary at target/release/kubectl-kubeoc
	$(CARGO) build --release --locked --bin kubectl-kubeoc

dist: ## release archive for this platform in dist/ (Linux: static musl), its sha256 in plugin.yaml and krew-manifest.yaml
	bash scripts/dist.sh

completions: ## rewrite completions/ from the command line's definition (a test fails when they are stale)
	KUBEOC_UPDATE_COMPLETIONS=1 $(CARGO) test --locked --lib completion::tests::the_checked_in_scripts_are_current

readme: ## rewrite README.md's command reference from the command line's definition (a test fails when it is stale)
	KUBEOC_UPDATE_README=1 $(CARGO) test --locked --lib cli::reference::tests::the_readme_reference_is_current

testbed-bins: ## build etcd and the Kubernetes control plane from Go modules (cached)
	bash testbed/scripts/build-controlplane.sh

cluster-up: ## start the local testbed cluster (idempotent)
	bash testbed/scripts/cluster-up.sh

testbed-reload: ## restart the node agent and stub model on freshly built code
	KUBEOC_TESTBED_RELOAD=1 bash testbed/scripts/cluster-up.sh

cluster-down: ## stop the testbed processes; keeps binaries and data
	bash testbed/scripts/cluster-down.sh

lint: ## rustfmt --check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

unit-test: ## tests that need no cluster
	$(CARGO) test --locked --workspace --lib --bins

integration-test: cluster-up ## tests against the testbed
	bash testbed/scripts/demo-controller-stop.sh
	$(CARGO) test --locked --workspace --tests -- --test-threads=4

test: lint cluster-up ## every test: lint, unit and integration tests against the testbed
	bash testbed/scripts/demo-controller-stop.sh
	$(CARGO) test --locked --workspace --all-targets
	bash testbed/scripts/standalone-check.sh

standalone-check: ## unit tests in a copy of the repository with nothing beside it
	bash testbed/scripts/standalone-check.sh

# Builds only the targets that hold upstream tests: every integration test again with the
# feature doubled the build's time and disk.
test-upstream: cluster-up ## kubeoc against upstream's YAML: KUBEOC_UPSTREAM_EXAMPLES=<dir> make test-upstream
	@test -d "$$KUBEOC_UPSTREAM_EXAMPLES/crds" || { echo "make test-upstream: set KUBEOC_UPSTREAM_EXAMPLES to a folder of upstream KubeOpenCode's published YAML (crds/, resources/, docs/)" >&2; exit 2; }
	bash testbed/scripts/demo-controller-stop.sh
	$(CARGO) test --locked -p kubeoc --features upstream-tests --lib --test crds --test admission --test task_run -- upstream_tests::

demo: build cluster-up ## bring the testbed up and show what kubeoc does so far
	bash testbed/scripts/demo.sh

bench: cluster-up ## the controller, CLI and chat terminal against the floor at 1,000 and 5,000 Agents (make bench N=100 for a quick run); bench/results.json
	bash testbed/scripts/demo-controller-stop.sh
	$(CARGO) build --release --locked --workspace --bin kubectl-kubeoc --bin kubeoc-bench
	target/release/kubeoc-bench $(if $(N),--n $(N)) $(BENCH_ARGS)
