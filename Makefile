# jiraconnect — developer entry points. `make dev` runs everything locally; `make test` runs every test.
SHELL := /bin/bash
GO ?= go
SQLC_VERSION ?= v1.30.0
STATICCHECK_VERSION ?= v0.8.2
TOOLS_BIN ?= $(shell $(GO) env GOPATH)/bin
# Fuzz targets run by `make fuzz` (and CI) for a short, bounded time each.
FUZZTIME ?= 10s

.PHONY: dev demo test test-short bench build lint sqlc sqlc-check tools fuzz securitysuite clean

## dev: embedded Temporal server + UI, migrations, API and worker in one process (Ctrl-C stops)
dev:
	$(GO) run ./cmd/jiraconnect-dev $(ARGS)

## demo: the dev stack plus the Jira simulator, a demo organization, connection and findings
demo:
	$(GO) run ./cmd/jiraconnect-dev --demo $(ARGS)

## build: the production binary and the dev stack
build:
	$(GO) build -o bin/jiraconnect ./cmd/jiraconnect
	$(GO) build -o bin/jiraconnect-dev ./cmd/jiraconnect-dev

## test: every test: unit, Postgres-backed, Temporal end-to-end, simulator, plus short fuzz runs
test:
	$(GO) test -count=1 -timeout 20m ./...
	$(MAKE) fuzz

## bench: every benchmark scenario (bench/README.md); prints a table and writes bench/results/latest.json.
## One scenario or other sizes: make bench ARGS='-run sync-cost -sync-cost.sizes=10x1000,100x10000'
bench:
	$(GO) run ./bench $(ARGS)

## securitysuite: the security probes against the real API process alone, printing their table
## (it also runs in `make test`, as part of the fault suite)
securitysuite:
	set -o pipefail; $(GO) test -count=1 -v -run '^TestSecuritySuite$$' ./faultsuite/ | grep -v '^=== '

## test-short: the same without the fuzz runs
test-short:
	$(GO) test -count=1 -timeout 20m ./...

## fuzz: run each fuzz target for FUZZTIME (scripts/fuzz.sh explains its one tolerated toolchain race)
fuzz:
	bash scripts/fuzz.sh $(FUZZTIME)

## tools: install sqlc and staticcheck through the Go toolchain
tools:
	@test -x $(TOOLS_BIN)/sqlc || $(GO) install github.com/sqlc-dev/sqlc/cmd/sqlc@$(SQLC_VERSION)
	@test -x $(TOOLS_BIN)/staticcheck || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

## sqlc: regenerate db/dbq from db/queries and db/migrations
sqlc: tools
	$(TOOLS_BIN)/sqlc generate

## sqlc-check: fail if the committed generated code is not what sqlc produces
sqlc-check: tools
	$(TOOLS_BIN)/sqlc diff

## lint: gofmt, go vet, staticcheck
lint: tools
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(TOOLS_BIN)/staticcheck ./...

clean:
	rm -rf bin
