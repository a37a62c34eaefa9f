# svcguard. On a fresh machine, `make demo` runs it locally, `make test` runs the unit and envtest suites
# and `make e2e` the end-to-end scenarios; each builds what it needs (the control plane's binaries come
# from Go modules, see hack/tools/envtest).
SHELL := /usr/bin/env bash -o pipefail

# The API server and etcd the envtest suites, the e2e suite and the demo run, and the controller manager
# the e2e suite runs. Bump with hack/tools/envtest/go.mod.
KUBE_VERSION ?= v1.37.2
ETCD_VERSION ?= v3.7.0
ENVTEST_DIR  := bin/envtest
ENVTEST_STAMP := $(ENVTEST_DIR)/.built-kube-$(KUBE_VERSION)-etcd-$(ETCD_VERSION)-kcm
export KUBEBUILDER_ASSETS := $(abspath $(ENVTEST_DIR))

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X github.com/svcguard/svcguard/pkg/version.Version=$(VERSION) -X github.com/svcguard/svcguard/pkg/version.Commit=$(COMMIT)
# -s -w: no symbol table or DWARF in the tools, which halves the link of the two control-plane binaries
# (18.5 s -> 9.3 s measured) in a cold CI run.
KUBE_LDFLAGS := -s -w -X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) \
	-X k8s.io/component-base/version.gitMajor=$(word 1,$(subst ., ,$(patsubst v%,%,$(KUBE_VERSION)))) \
	-X k8s.io/component-base/version.gitMinor=$(word 2,$(subst ., ,$(KUBE_VERSION)))

# The race detector, on request: `make test RACE=-race` (needs cgo). Off by default: building every
# dependency a second time with it costs a cold CI run (2 cores, 30 minutes with it) about 4 minutes.
RACE ?=
# -ldflags=-w: test binaries without DWARF (stack traces keep file and line) link 20-35% faster, which
# a cold CI run pays for some 30 binaries of up to 130 MB.
TEST_FLAGS ?= $(RACE) -count=1 -timeout 20m -ldflags=-w

.PHONY: all build envtest test e2e bench fuzz demo lint clean help

all: lint build test e2e

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## Build bin/svcguard.
	go build -ldflags "$(LDFLAGS)" -o bin/svcguard ./cmd/svcguard

envtest: $(ENVTEST_STAMP) ## Build kube-apiserver, etcd and kube-controller-manager from Go modules into bin/envtest (skipped when built).

# About 13 minutes on 2 cores with a cold Go cache (the controller manager shares most of the API
# server's packages and adds about 2.5), seconds with a warm one.
$(ENVTEST_STAMP): hack/tools/envtest/go.mod hack/tools/envtest/go.sum
	@mkdir -p $(ENVTEST_DIR)
	@echo "Building kube-apiserver and kube-controller-manager $(KUBE_VERSION) and etcd $(ETCD_VERSION) from Go modules into $(ENVTEST_DIR)"
	cd hack/tools/envtest && go build -ldflags "$(KUBE_LDFLAGS)" -o $(KUBEBUILDER_ASSETS)/ k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
	cd hack/tools/envtest && go build -ldflags "-s -w" -o $(KUBEBUILDER_ASSETS)/etcd go.etcd.io/etcd/server/v3
	@rm -f $(ENVTEST_DIR)/.built-*
	@touch $@

test: envtest rules ## Alert rules, unit and envtest suites (real kube-apiserver + etcd); `make e2e` runs the rest.
ifeq ($(RACE),)
	go test $(TEST_FLAGS) $(ALL_PKGS)
else
	go test $(TEST_FLAGS) $(filter-out $(NORACE_PKGS),$(ALL_PKGS))
	go test $(filter-out -race,$(TEST_FLAGS)) $(NORACE_PKGS)
endif

# The end-to-end suite: a control plane of processes (etcd, kube-apiserver, kube-controller-manager),
# three replicas of the real binary behind a Service stand-in, the scenarios of docs/e2e.md. It prints
# their table at the end, also written to $(E2E_REPORT). About 9 minutes here.
E2E_REPORT := bin/e2e-report.md
e2e: envtest ## End-to-end scenarios (docs/e2e.md): real control plane processes, 3 replicas of the binary.
	@rm -f $(E2E_REPORT)
	E2E_REPORT=$(abspath $(E2E_REPORT)) go test $(filter-out -race,$(TEST_FLAGS)) ./e2e; \
	  status=$$?; [ -f $(E2E_REPORT) ] && cat $(E2E_REPORT); exit $$status

# Every package but the e2e suite (make e2e) and the process benchmarks (make bench), which have no tests.
ALL_PKGS = $(shell go list ./... | grep -Ev '^github.com/svcguard/svcguard/(e2e|test/perf)$$')
# The packages that run cert-manager's controllers in the test process go without the race detector: its
# build of cert-manager and its dependencies would add minutes to a cold CI run, and the svcguard they test
# runs there as a separate process of the plain binary anyway.
NORACE_PKGS = github.com/svcguard/svcguard/test/integration/deploy github.com/svcguard/svcguard/pkg/testenv/certmanager

# Unit tests live beside the code; the envtest suites in test/integration (and the cert-manager harness's
# own, beside it), the e2e suite in e2e.
UNIT_PKGS = $(shell go list ./... | grep -Ev '^github.com/svcguard/svcguard/(test|e2e|pkg/testenv/certmanager)(/|$$)')

.PHONY: unit integration

unit: ## Unit tests only: seconds, no control plane.
	go test $(TEST_FLAGS) $(UNIT_PKGS)

integration: envtest ## The envtest suites (test/integration): real kube-apiserver + etcd, in-process svcguard.
	go test $(TEST_FLAGS) $(filter-out $(NORACE_PKGS),$(shell go list ./test/...))
	go test $(filter-out -race,$(TEST_FLAGS)) $(NORACE_PKGS)

# The benchmarks' output, which hack/perfreport turns into docs/performance.md's tables and chart.
BENCH_OUT := bin/bench.txt

bench: envtest ## Benchmarks (in process, over the wire, through the API server); rewrites docs/performance.md's tables and docs/performance.svg.
	@mkdir -p bin
	go test -run '^$$' -bench . -benchmem -count=1 -timeout 60m ./... | tee $(BENCH_OUT)
	go run ./hack/perfreport -in $(BENCH_OUT) -md docs/performance.md -svg docs/performance.svg

# How long `make fuzz` runs each fuzz target.
FUZZTIME ?= 30s

fuzz: ## Run every fuzz target for FUZZTIME (30s) each, one after the other; findings land in testdata/fuzz.
	go test -run '^$$' -fuzz '^FuzzConfigFile$$' -fuzztime $(FUZZTIME) ./pkg/options
	go test -run '^$$' -fuzz '^FuzzHandler$$' -fuzztime $(FUZZTIME) ./webhook/servicehost
	go test -run '^$$' -fuzz '^FuzzHandler$$' -fuzztime $(FUZZTIME) ./webhook/nodeport
	go test -run '^$$' -fuzz '^FuzzHandler$$' -fuzztime $(FUZZTIME) ./webhook/servicepath
	go test -run '^$$' -fuzz '^FuzzParseRange$$' -fuzztime $(FUZZTIME) ./webhook/nodeport
	go test -run '^$$' -fuzz '^FuzzParsePinFlag$$' -fuzztime $(FUZZTIME) ./webhook/nodeport
	go test -run '^$$' -fuzz '^FuzzParsePinAnnotation$$' -fuzztime $(FUZZTIME) ./webhook/nodeport

demo: envtest build ## Run svcguard locally against a local control plane; Ctrl-C stops and cleans up.
	go run ./hack/demo --svcguard bin/svcguard

GOLANGCI_LINT := bin/golangci-lint

lint: $(GOLANGCI_LINT) ## golangci-lint (.golangci.yml: staticcheck, errcheck, gosec, revive, ...), gofmt and goimports.
	$(GOLANGCI_LINT) run ./...

# Built from the pinned module in hack/tools/lint (a few minutes cold), rebuilt when the pin changes.
$(GOLANGCI_LINT): hack/tools/lint/go.mod hack/tools/lint/go.sum
	cd hack/tools/lint && go build -o $(abspath $(GOLANGCI_LINT)) github.com/golangci/golangci-lint/v2/cmd/golangci-lint

clean: ## Remove bin/ except the envtest binaries.
	rm -f bin/svcguard

# promtool for `make rules`, built from the pinned module in hack/tools/promtool and skipped when built for
# this version, which must match that go.mod. remove_all_sd leaves out every service-discovery plugin
# (cloud SDKs, client-go), which rule tests never use: it is most of promtool's cold build.
PROMTOOL_VERSION := v0.316.0
PROMTOOL := bin/promtool
PROMTOOL_STAMP := bin/.built-promtool-$(PROMTOOL_VERSION)
# promtool loads plain rule files only, so the tests in manifests/components/monitoring/tests load the
# PrometheusRule's groups from this file, which `make rules` writes first.
RULES_FILE := bin/monitoring/svcguard.rules.yaml

.PHONY: promtool rules

promtool: $(PROMTOOL_STAMP) ## Build bin/promtool from Go modules (hack/tools/promtool), skipped when built.

$(PROMTOOL_STAMP): hack/tools/promtool/go.mod hack/tools/promtool/go.sum
	@mkdir -p bin
	cd hack/tools/promtool && go build -tags remove_all_sd -ldflags "-s -w" -o $(abspath $(PROMTOOL)) github.com/prometheus/prometheus/cmd/promtool
	@rm -f bin/.built-promtool-*
	@touch $@

rules: $(PROMTOOL_STAMP) ## Unit-test the alert rules with promtool test rules
	cd hack/tools/promtool && go run ./rulefile $(abspath manifests/components/monitoring/prometheusrule.yaml) $(abspath $(RULES_FILE))
	$(PROMTOOL) test rules manifests/components/monitoring/tests/*.yaml
