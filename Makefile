# pearld: two commands do everything on a fresh machine.
#   make demo   the daemon with a simulated Pearl fleet
#   make test   every test, with the race detector

GO       ?= go
BIN      := bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X github.com/pearld/pearld/engine.Version=$(VERSION)
PKGS     := ./...
SHIPPED_PLUGINS := ./plugins/stream_quality

.PHONY: all build test demo lint fmt vet services browsers js proto fuzz bench clean

FUZZTIME ?= 60s

all: build

build:
	@mkdir -p $(BIN)/plugins
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/pearld ./cmd/pearl-sim
	$(GO) build -o $(BIN)/plugins/ $(SHIPPED_PLUGINS)

## test: start what the tests need, check formatting and vet, build and test the
## browser client, run every Go test with -race (Chromium tests included).
test: services browsers lint js
	$(GO) test -race -count=1 -timeout 15m $(PKGS)
	./scripts/fuzz.sh 5s

## bench: a short run of every benchmark scenario (see BENCHMARKS.md).
bench: build
	./scripts/bench.sh

## fuzz: run every fuzz target for FUZZTIME each, one after the other.
fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

## demo: a simulated fleet, the shipped demo pipeline, a ready token.
demo: build
	./$(BIN)/pearld demo

lint: fmt vet

fmt:
	@out=$$(gofmt -l .); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

## proto: regenerate sdk/proto from plugin.proto (installs protoc and the generators).
proto:
	./scripts/proto.sh

## js: build and test the browser client (sdk/js); fails when dist/ is stale.
js:
	./scripts/js.sh

browsers:
	@./scripts/ensure-chromium.sh

services:
	@./scripts/ensure-redis.sh

clean:
	rm -rf $(BIN)
