# fleetjobs — the two commands first: `make run` and `make test`.
GO        ?= go
BIN       ?= bin/fleetjobs
PKGS      ?= ./...
# The whole suite must stay well under 10 minutes on a 2-core machine.
TESTFLAGS ?= -count=1 -timeout 15m
BENCHTIME ?= 1x
# The exhaustiveness check of switches over the closed sets (//sumtype:decl)
# that golangci-lint runs as gochecksumtype; without golangci-lint, `make lint`
# runs it through `go run` at this version (fetched once through the module proxy).
SUMTYPE   ?= github.com/alecthomas/go-check-sumtype/cmd/go-check-sumtype@v0.3.1

.PHONY: run test build bench lint vet fmt clean help

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-6s %s\n", $$1, $$2}'

run: build ## the whole service on embedded defaults (data in ./data), with the demo fleet on simulated devices
	FLEETJOBS_DEVICES=$${FLEETJOBS_DEVICES:-sim} FLEETJOBS_DEMO=$${FLEETJOBS_DEMO:-1} $(BIN) serve

test: ## every test, with a real redis-server and MQTT broker started on free ports
	$(GO) vet $(PKGS)
	bash .ci/testenv.sh $(GO) test $(TESTFLAGS) $(PKGS)

build: ## build bin/fleetjobs
	$(GO) build -o $(BIN) ./cmd/fleetjobs

bench: ## every benchmark once at its default size: a smoke run, 3-4 min (BENCHMARKS.md has the commands behind its figures)
	bash .ci/testenv.sh $(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) $(PKGS)

vet: ## go vet of every package
	$(GO) vet $(PKGS)

lint: ## golangci-lint when installed, else go vet, gofmt and go-check-sumtype
	@if command -v golangci-lint >/dev/null 2>&1; then golangci-lint run ./...; \
	else echo "golangci-lint not installed: running go vet, gofmt and go-check-sumtype only"; $(GO) vet $(PKGS) && \
	{ test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }; } && \
	$(GO) run $(SUMTYPE) $(PKGS); fi

fmt: ## gofmt every Go file
	gofmt -w $$(git ls-files '*.go')

clean: ## remove build output (not ./data)
	rm -rf bin
