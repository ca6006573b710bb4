# Build, test and measure the switch. `make help` lists the targets.
GO        ?= go
BIN       ?= bin/switch
FUZZTIME  ?= 5m
PKGS      := ./...

.PHONY: help build test bench fuzz lint conformance clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: ## build bin/switch
	$(GO) build -o $(BIN) ./cmd/switch

test: lint ## vet, gofmt check and the whole test suite (fuzz seed corpora included)
	$(GO) test -count=1 $(PKGS)

bench: ## every benchmark with allocation counts (BENCH=regexp, COUNT=n)
	$(GO) test -run '^$$' -bench '$(or $(BENCH),.)' -benchmem -count $(or $(COUNT),1) $(PKGS)

fuzz: ## run every fuzz target for FUZZTIME (default 5m) each (FUZZPKGS=./codec/... to narrow)
	@scripts/fuzz-all.sh $(FUZZTIME)

lint: ## go vet and the gofmt check
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	 if [ -n "$$out" ]; then echo "not gofmt-formatted:"; echo "$$out"; exit 1; fi

conformance: ## the command-line contract checks in ../shared/conformance
	../shared/conformance/run

clean: ## remove build output
	rm -rf bin
