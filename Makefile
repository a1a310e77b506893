# distro: `make` installs what the host needs and builds bin/distro;
# `make test` runs the unit and integration tests; `make bench` prints the
# boot figures.
SHELL := /bin/bash
GO ?= go
BIN := bin/distro
K8S_VERSION := v1.37.2
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
TAGS := kustomize_disable_go_plugin_support,no_btrfs,no_devmapper,no_zfs,providerless
KV := k8s.io/component-base/version
LDFLAGS := -s -w \
	-X distro/pkg/version.Version=$(VERSION) -X distro/pkg/version.GitCommit=$(COMMIT) \
	-X $(KV).gitVersion=$(K8S_VERSION) -X $(KV).gitMajor=1 -X $(KV).gitMinor=37 \
	-X $(KV).gitTreeState=clean -X $(KV).gitCommit=$(COMMIT) \
	-X k8s.io/client-go/pkg/version.gitVersion=$(K8S_VERSION) \
	-X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=37
UNIT_PKGS := ./pkg/config/... ./pkg/pki/... ./pkg/token/... ./pkg/component/... ./pkg/fsutil/... ./pkg/addons/... ./pkg/node/kubelet/... ./pkg/join/... ./pkg/etcd/... \
	./pkg/node/netpol/... ./pkg/checkconfig/... ./pkg/certrenew/... ./pkg/node/registries/... ./pkg/node/images/... ./pkg/profiling/... ./pkg/kubeclient/... ./pkg/controlplane/...

.PHONY: all deps build kube-patch runtime test unit integration e2e e2e-certs e2e-ha e2e-shared-host image bench bench-scale clean conformance-images conformance

all: deps build

deps:
	@scripts/install-deps.sh

build: $(BIN)

# Go commands of the main module build against k8s.io/kubernetes and flannel
# with the timing patches of scripts/kube-patch.sh (a symlink to each module
# in the cache, the changed files laid over it with -overlay, a go.work). Rerun on
# every make: it takes a fraction of a second and follows go.mod.
KUBE := $(CURDIR)/build/kube
GOMAINENV = GOWORK=$(KUBE)/go.work GOFLAGS="$(GOFLAGS) -overlay=$(KUBE)/overlay.json"
GOMAIN = $(GOMAINENV) $(GO)
kube-patch:
	@scripts/kube-patch.sh $(KUBE)

# runc, the containerd shim, CNI plugins and the pause image, built from
# source (scripts/runtime is its own Go module), and the packaged add-ons'
# images (CoreDNS, metrics-server, local-path-provisioner, busybox; see
# scripts/build-addons.sh), carried in the binary.
BUNDLE := pkg/bundle/assets/runtime.tar.zst
RUNTIME := build/runtime/.built
ADDONS := build/addons/.built
runtime: $(BUNDLE)
$(RUNTIME): scripts/build-runtime.sh scripts/build-pause.sh scripts/runtime/go.mod scripts/runtime/go.sum scripts/runtime/mkimage/main.go
	scripts/build-runtime.sh $(CURDIR)/build/runtime
	@touch $@
$(ADDONS): scripts/build-addons.sh scripts/addons/go.mod scripts/addons/go.sum scripts/addons/coredns/main.go manifests/images.env scripts/runtime/mkimage/main.go
	scripts/build-addons.sh $(CURDIR)/build/addons
	@touch $@
$(BUNDLE): $(RUNTIME) $(ADDONS)
	tar -cf - --owner=0 --group=0 --sort=name --mtime=@0 -C build/runtime bin images -C $(CURDIR)/build/addons images | zstd -q -10 -T0 -f -o $@.tmp
	sha256sum $@.tmp | cut -c1-64 > $@.sha256
	mv $@.tmp $@

# The Go build cache makes this a no-op when nothing changed.
$(BIN): $(BUNDLE) kube-patch FORCE
	@mkdir -p bin
	CGO_ENABLED=0 $(GOMAIN) build -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/distro
	@ln -sf distro bin/kubectl; ln -sf distro bin/ctr; ln -sf distro bin/crictl

FORCE:

test: unit integration

unit: kube-patch
	$(GOMAIN) test -count=1 $(UNIT_PKGS)

# Builds image tarballs from local files (the tests' busybox image).
MKIMAGE := build/mkimage
$(MKIMAGE): scripts/runtime/mkimage/main.go scripts/runtime/go.mod
	$(GO) -C scripts/runtime build -o $(CURDIR)/$@ ./mkimage

integration: build $(MKIMAGE)
	DISTRO_BIN=$(CURDIR)/$(BIN) MKIMAGE=$(CURDIR)/$(MKIMAGE) $(GOMAIN) test -count=1 -v -timeout 20m ./tests/integration/...

# The node image, FROM scratch: the binary and a userland from Debian
# packages (no registry).
IMAGE ?= distro:dev
image: build
	DISTRO_VERSION=$(VERSION) scripts/docker-rootfs.sh build/rootfs
	docker build -q -t $(IMAGE) .

# The test image of the e2e suites: Debian's busybox-static.
build/e2e-busybox.tar: $(MKIMAGE)
	$(MKIMAGE) --tag distro.test/busybox:1 --out $@ --entrypoint /bin/sh \
		--file /bin/busybox:/bin/busybox:0755 --dir /www:0755 --dir /tmp:1777 \
		$(foreach a,sh httpd sleep nc echo cat hostname nslookup,--symlink /bin/$(a):busybox)

# 1 server + 2 agents in Docker (tests/e2e/e2e_test.go), and the embedded
# registry mirror (tests/e2e/mirror_test.go).
e2e: image build/e2e-busybox.tar
	DISTRO_IMAGE=$(IMAGE) E2E_TEST_IMAGE_TAR=$(CURDIR)/build/e2e-busybox.tar $(GOMAIN) test -count=1 -v -timeout 25m -run 'TestCluster$$|TestEmbeddedRegistry$$' ./tests/e2e/...

# A server and an agent with short test certificate lifetimes, renewed live
# for E2E_CERT_RENEWAL_MINUTES (tests/e2e/certrenew_test.go).
E2E_CERT_RENEWAL_MINUTES ?= 30
e2e-certs: image $(MKIMAGE) build/e2e-busybox.tar
	DISTRO_IMAGE=$(IMAGE) E2E_TEST_IMAGE_TAR=$(CURDIR)/build/e2e-busybox.tar E2E_CERT_RENEWAL_MINUTES=$(E2E_CERT_RENEWAL_MINUTES) \
		$(GOMAIN) test -count=1 -v -timeout $$(( $(E2E_CERT_RENEWAL_MINUTES) + 15 ))m -run 'TestCertRenewal$$' ./tests/e2e/...

# 3 servers on embedded etcd + 1 agent in Docker (tests/e2e/ha_test.go): join,
# failover under a writer, membership, simultaneous start
# (E2E_SIMULTANEOUS_RUNS=5 repeats that one).
e2e-ha: image
	DISTRO_IMAGE=$(IMAGE) $(GOMAIN) test -count=1 -v -timeout 30m -run 'TestHA' ./tests/e2e/...

# A node on the host and a 1-server + 1-agent cluster in Docker side by side
# with pods churning (E2E_SHARED_HOST_SECONDS, default 300), then
# distro-killall.sh for the host node (tests/e2e/sharedhost_test.go).
e2e-shared-host: image
	DISTRO_BIN=$(CURDIR)/$(BIN) DISTRO_IMAGE=$(IMAGE) $(GOMAIN) test -count=1 -v -timeout 30m -run 'TestSharedHost$$' ./tests/e2e/...

# The upstream conformance suite, offline: every image it needs built from
# source (scripts/conformance/images.sh), hydrophone to run it in the
# cluster, and a 1-server + 1-agent cluster in Docker (scripts/conformance/
# run.sh; KUBECONFIG=… runs it against an existing cluster, QUICK=1 runs the
# sample in scripts/conformance/quick.txt).
HYDROPHONE := build/tools/hydrophone
HYDROPHONE_VERSION := v0.8.0
$(HYDROPHONE):
	@mkdir -p build/tools
	GOBIN=$(CURDIR)/build/tools CGO_ENABLED=0 $(GO) install sigs.k8s.io/hydrophone@$(HYDROPHONE_VERSION)

conformance-images: build $(HYDROPHONE)
	DISTRO_BIN=$(CURDIR)/$(BIN) scripts/conformance/images.sh $(CURDIR)/build/conformance-images

conformance: image conformance-images
	QUICK=$(QUICK) scripts/conformance/run.sh

bench: build $(MKIMAGE)
	@if docker info >/dev/null 2>&1; then $(MAKE) --no-print-directory image build/e2e-busybox.tar; fi
	$(GOMAINENV) scripts/bench.sh $(CURDIR)/$(BIN)

# The kwok controller (sigs.k8s.io/kwok, pinned by scripts/kwok/go.mod, its
# own module: kwok's Kubernetes versions never enter distro's go.mod).
KWOK := build/kwok
$(KWOK): scripts/kwok/go.mod scripts/kwok/go.sum
	@mkdir -p build
	CGO_ENABLED=0 nice -n 19 $(GO) -C scripts/kwok build -trimpath -ldflags '-s -w' -o $(CURDIR)/$@ sigs.k8s.io/kwok/cmd/kwok

# A control-plane-only server with 1,000 kwok nodes and 30,000 pods from
# Deployments (scripts/bench-scale.sh; SCALE_NODES, SCALE_PODS,
# SCALE_DEPLOYMENTS size it). Not part of make test or .ci/run.
bench-scale: build $(KWOK)
	$(GOMAINENV) scripts/bench-scale.sh $(CURDIR)/$(BIN) $(CURDIR)/$(KWOK)

clean:
	rm -rf bin
