# Petrel — build, test and run. See README.md.
#
# Tools are pinned here and installed from the Go module proxy into a cache
# outside the repository (one directory per tool and version), so a fresh
# clone needs nothing but Go.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

PETREL_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/petrel
TOOLS := $(PETREL_CACHE)/tools

BUF_VERSION := v1.75.0
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.1

BUF := $(TOOLS)/buf-$(BUF_VERSION)/buf
PROTOC_GEN_GO := $(TOOLS)/protoc-gen-go-$(PROTOC_GEN_GO_VERSION)/protoc-gen-go
PROTOC_GEN_GO_GRPC := $(TOOLS)/protoc-gen-go-grpc-$(PROTOC_GEN_GO_GRPC_VERSION)/protoc-gen-go-grpc
PROTO_PATH := $(dir $(BUF)):$(dir $(PROTOC_GEN_GO)):$(dir $(PROTOC_GEN_GO_GRPC)):$(PATH)

SERVICES := smtp delivery imap pop3 store
# Every Go module's packages, as workspace patterns.
PKGS := ./platform/... ./proto/gen/go/... $(foreach s,$(SERVICES),./services/$(s)/...) ./ctl/...

GO_TEST_FLAGS ?= -race -shuffle=on -count=1 -timeout=30m
BENCH_FLAGS ?= -run=^$$ -bench=. -benchmem -count=1 -timeout=60m
FUZZ_TIME ?= 30s

export GOFLAGS := -buildvcs=false

include mk/deploy.mk
include mk/bench-smtp.mk

.PHONY: all build run dev test test-go lint vet fmt-check proto proto-check tools bench fuzz deps clean

all: lint build test-go

## build: build every service binary and petrelctl into bin/
build:
	@mkdir -p bin
	@for s in $(SERVICES); do \
		echo "go build petrel-$$s"; \
		go build -o bin/petrel-$$s ./services/$$s/cmd/petrel-$$s; \
	done
	@if [[ -d ctl/cmd/petrelctl ]] && ls ctl/cmd/petrelctl/*.go >/dev/null 2>&1; then \
		echo "go build petrelctl"; go build -o bin/petrelctl ./ctl/cmd/petrelctl; fi

## run: run Petrel on this machine (all services, dependencies on loopback)
run: build
	bash scripts/run.sh

## dev: same as run, for development
dev: run

## test: lint, the Helm chart check, then every module's tests with -race against real PostgreSQL, NATS and MinIO
test: lint helm-lint test-go

test-go:
	@eval "$$(bash scripts/test-deps.sh)"; \
	go test $(GO_TEST_FLAGS) $(PKGS)

## lint: buf lint, go vet, gofmt, and the generated code is what `make proto` makes
lint: vet fmt-check proto-check
	PATH="$(PROTO_PATH)" $(BUF) lint proto

vet:
	go vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l platform services proto/gen/go ctl); \
	if [[ -n "$$out" ]]; then echo "not gofmt-formatted:"; echo "$$out"; exit 1; fi

## proto: regenerate proto/gen/go from proto/petrel
proto: tools
	cd proto && PATH="$(PROTO_PATH)" $(BUF) generate

proto-check: tools
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	(cd proto && PATH="$(PROTO_PATH)" $(BUF) generate -o "$$tmp"); \
	if ! diff -r "$$tmp/gen/go/petrel" proto/gen/go/petrel; then \
		echo "proto/gen/go is stale: run 'make proto' and commit the result"; exit 1; \
	fi

tools: $(BUF) $(PROTOC_GEN_GO) $(PROTOC_GEN_GO_GRPC)

$(BUF):
	GOBIN=$(dir $@) GOWORK=off go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(PROTOC_GEN_GO):
	GOBIN=$(dir $@) GOWORK=off go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(PROTOC_GEN_GO_GRPC):
	GOBIN=$(dir $@) GOWORK=off go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

## bench: run the benchmarks against real dependencies (see docs/benchmarks.md)
bench:
	@eval "$$(bash scripts/test-deps.sh)"; \
	go test $(BENCH_FLAGS) $(PKGS)

## fuzz: run every fuzz target for FUZZ_TIME each
fuzz:
	@bash scripts/fuzz.sh $(FUZZ_TIME)

## deps: start (or reuse) PostgreSQL, NATS and MinIO for tests and print their settings
deps:
	@bash scripts/test-deps.sh

clean:
	rm -rf bin
