# berth build, test and run targets. `make run` and `make test` are the
# quick start; everything they need is installed by them.

SHELL := /bin/bash
GO ?= go
PREFIX ?= /usr/local
BIN := $(CURDIR)/bin
TOOLS := $(BIN)/tools
export PATH := $(TOOLS):$(PATH)

VERSION ?= v0.1.0-dev+$(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -s -w -X github.com/berthd/berth/internal/version.Version=$(VERSION) -X github.com/berthd/berth/internal/version.Revision=$(REVISION)

# Pinned code generators and linters, installed into bin/tools.
PROTOC_GEN_GO := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
PROTOC_GEN_GO_TTRPC := github.com/containerd/ttrpc/cmd/protoc-gen-go-ttrpc@v1.2.10
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

# Debian packages the daemon and the tests use.
APT_RUN := runc crun busybox-static containernetworking-plugins iptables iproute2 tini
APT_TEST := $(APT_RUN) containerd docker-registry protobuf-compiler tmux apache2-utils openssl bc git make gcc pigz
APT_UPDATED := $(BIN)/.apt-updated

COMMANDS := berthd berth berth-shim-runc-v2
PROTOS := $(shell find proto -name '*.proto')

.PHONY: all build binaries protos check-protos test test-unit test-integration bench run lint tools deps deps-test install clean

all: build

build: binaries

# The shim is built without cgo: one runs per container, and a static
# binary starts faster and keeps about 1.2 MB less resident.
SHIM := berth-shim-runc-v2

binaries:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./cmd/,$(filter-out $(SHIM),$(filter $(COMMANDS),$(notdir $(wildcard cmd/*)))))
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/$(SHIM)

# Install missing Debian packages (as root); apt-get update runs once.
define apt_install
	@missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		if [ ! -f $(APT_UPDATED) ]; then apt-get update -qq && mkdir -p $(BIN) && touch $(APT_UPDATED); fi; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

deps:
	$(call apt_install,$(APT_RUN))

deps-test:
	$(call apt_install,$(APT_TEST))

tools:
	@mkdir -p $(TOOLS)
	@test -x $(TOOLS)/protoc-gen-go || GOBIN=$(TOOLS) $(GO) install $(PROTOC_GEN_GO)
	@test -x $(TOOLS)/protoc-gen-go-grpc || GOBIN=$(TOOLS) $(GO) install $(PROTOC_GEN_GO_GRPC)
	@test -x $(TOOLS)/protoc-gen-go-ttrpc || GOBIN=$(TOOLS) $(GO) install $(PROTOC_GEN_GO_TTRPC)
	@test -x $(TOOLS)/staticcheck || GOBIN=$(TOOLS) $(GO) install $(STATICCHECK)

# Regenerate the Go code of berth's own services.
protos: tools
	@for f in $(PROTOS); do \
		protoc -I proto -I /usr/include \
			--go_out=proto --go_opt=module=github.com/berthd/berth/proto \
			--go-grpc_out=proto --go-grpc_opt=module=github.com/berthd/berth/proto \
			$$f || exit 1; \
	done

# Fail when the committed generated code differs from what protos makes.
check-protos: protos
	@git diff --exit-code -- proto || { echo "generated code in proto/ is out of date: run 'make protos' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- proto)" || { git status --porcelain -- proto; echo "untracked generated files in proto/"; exit 1; }

lint: tools
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	staticcheck ./...

test-unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /integration)

test-integration: binaries
	BERTH_BIN_DIR=$(BIN) $(GO) test -count=1 -timeout 20m ./integration/...

test: deps-test lint check-protos test-unit test-integration

bench: deps-test binaries
	$(GO) test -run '^$$' -bench . -benchtime 3x $$($(GO) list ./... | grep -v /integration)
	@for s in bench/*.sh; do echo "== $$s"; BERTH_BIN_DIR=$(BIN) bash $$s || exit 1; done

# Install what is missing, build, and run berthd in the foreground with the
# standard paths. Ctrl-C stops it cleanly.
run: deps binaries
	@test "$$(id -u)" = 0 || { echo "berthd runs as root: sudo make run"; exit 1; }
	$(BIN)/berthd

install: binaries
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(addprefix $(BIN)/,$(filter $(COMMANDS),$(notdir $(wildcard cmd/*)))) $(DESTDIR)$(PREFIX)/bin/
	install -D -m 0644 contrib/berthd.service $(DESTDIR)/etc/systemd/system/berthd.service
	install -d -m 0755 $(DESTDIR)/etc/berth

clean:
	rm -rf $(BIN)
	$(GO) clean -testcache
