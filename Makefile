# Build, test and measure the switch. `make help` lists the targets.
GO        ?= go
BIN       ?= bin/switch
FUZZTIME  ?= 5m
PKGS      := ./...

.PHONY: help build run test test-faults soak bench bench-switch fuzz lint conformance ceiling scenarios race clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: ## build bin/switch
	$(GO) build -o $(BIN) ./cmd/switch

run: ## start the switch on its embedded demo configuration with two simulated banks (test keys only)
	$(GO) run ./cmd/switch run --demo

test: lint ## vet, gofmt check and the whole test suite (fuzz seed corpora included)
	$(GO) test -count=1 $(PKGS)

test-faults: ## the fault, hostile-input, scanner and kill -9 tests (build tag faults; docs/faults.md, docs/crash.md)
	$(GO) test -count=1 -tags faults -timeout 20m ./faults/...

soak: build ## the switch at RATE (default 10000/s) for DURATION (default 30m), memory and goroutines sampled (scripts/soak.sh)
	scripts/soak.sh

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

ceiling: build ## the no-switch ceiling: bank simulator and closed-loop load test as separate processes (TERMINALS=64 DURATION=10s)
	@$(BIN) sim bank --listen 127.0.0.1:9100 --control 127.0.0.1:9101 --spec iso87-ascii >/dev/null 2>&1 & pid=$$!; sleep 1; \
	 $(BIN) loadtest --target 127.0.0.1:9100 --spec iso87-ascii --terminals $(or $(TERMINALS),64) --max \
	   --duration $(or $(DURATION),10s) --metrics http://127.0.0.1:9101/metrics --json ceiling.json; \
	 rc=$$?; kill $$pid; exit $$rc

bench-switch: ## the load generator against the demo switch and the no-switch ceiling (TERMINALS, DURATION, RATES, REPEAT, FSYNC=on|off|both, CONNS=10000, CONNS_RATE, CONNS_DURATION, PROFILE=1)
	scripts/bench-switch.sh

scenarios: ## run the shipped terminal scenarios against TARGET (default: the demo's pos channel 127.0.0.1:5000)
	$(GO) run ./cmd/switch sim run simulators/scenarios/0[1-5]-*.yaml --target $(or $(TARGET),127.0.0.1:5000) --junit scenarios.xml

race: ## the concurrency-heavy packages under the race detector
	$(GO) test -race -count=1 ./channel ./router ./link ./journal ./saf ./limits

clean: ## remove build output
	rm -rf bin
