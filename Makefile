# Pulse developer entry points. `make` alone lists them.
#
# Every target is a thin wrapper around a script in scripts/, so CI
# (.ci/run) and developers run exactly the same commands.

SHELL := bash
.DEFAULT_GOAL := help

.PHONY: help up down test lint services fmt bench

help: ## List the targets
	@echo "Pulse make targets:"
	@grep -E '^[a-z][a-zA-Z_-]*:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN { FS = ":.*## " } { printf "  %-10s %s\n", $$1, $$2 }'

up: ## Build and start the whole stack with demo data; prints the dashboard URL
	bash scripts/up.sh

down: ## Stop everything `make up` started
	bash scripts/down.sh

test: ## Run all tests (starts PostgreSQL and NATS if needed)
	bash scripts/test.sh

lint: ## cargo fmt --check, clippy -D warnings, unused dependencies, shellcheck, ESLint and the TypeScript check
	bash scripts/lint.sh

services: ## Make sure PostgreSQL and NATS (JetStream) are reachable
	bash scripts/ensure-postgres.sh
	bash scripts/ensure-nats.sh

fmt: ## Format all Rust code
	cargo fmt --all

bench: ## Benchmark a release gateway with pulse-bench (every scenario, full size; results in target/bench/)
	bash scripts/bench.sh
