# Two commands: `make run` starts the gateway, `make test` runs the suite.
# Both install what they need first (uv, then the locked dependencies into .venv).
UV := python3 -m uv
PORT ?= 8080

.PHONY: clients run test lint bench bench-check setup fuzz pools-report chaos compat

setup:
	@python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install -q uv
	@$(UV) sync --frozen --quiet

run: setup
	$(UV) run --frozen tokenrelay serve --port $(PORT) --quickstart-key

# The real coding CLIs tests/clients drives and the Node SDKs the /docs examples use
# (tests/docs), as their package-lock.json pin them (npm ci again only when a lock changed).
clients:
	@for dir in tests/clients tests/docs; do \
	  sum=$$(sha256sum $$dir/package-lock.json | cut -d' ' -f1); \
	  stamp=$$dir/node_modules/.installed-lock-sha256; \
	  if [ "$$(cat $$stamp 2>/dev/null)" != "$$sum" ]; then \
	    npm ci --prefix $$dir --no-audit --no-fund --loglevel=error && echo "$$sum" > $$stamp || exit 1; \
	  fi; \
	done

# Four pytest-xdist workers, a test file each at a time (module fixtures stay per file): most
# tests wait on servers and streams (serially the suite used 62 % of CI's two cores), so four
# overlap well. JOBS=0 runs serially. The 25 slowest tests are listed at the end.
test: setup clients
	$(UV) run --frozen pytest -n $(or $(JOBS),4) --dist loadfile --durations=25

# The compatibility contract (/compatibility): runs the matrix (tests/compat, official SDKs
# against the emulator) and the coding CLIs (tests/clients), records what each cell observed in
# src/tokenrelay/catalog/compatibility_results.json, and fails when that changed the committed
# file (CI runs it; commit the new file when a change of behaviour is meant).
compat: setup clients
	TOKENRELAY_COMPAT_RECORD=1 $(UV) run --frozen pytest -p no:randomly tests/compat tests/clients/test_coding_clis.py
	git diff --exit-code -- src/tokenrelay/catalog/compatibility_results.json

lint: setup
	$(UV) run --frozen ruff check src tests bench
	$(UV) run --frozen ruff format --check src tests bench
	$(UV) run --frozen lint-imports
	$(UV) run --frozen mypy

bench: setup
	$(UV) run --frozen python -m bench

# The speed gate (about 2 min): CPU per request and per stream chunk, this tree against the code
# of the commit that last wrote bench/results/baseline.json, measured in the same run; fails past
# +10 %. Run before a change to the request path lands.
bench-check: setup
	$(UV) run --frozen python -m bench.check

# Hypothesis over both client APIs and count_tokens against a live gateway (2,500 examples for
# each of the 8 tests: 20,000 bodies; the summary line counts bodies and 5xx), and schemathesis
# over the admin API's OpenAPI document (2,500 per operation, both storage backends).
fuzz: setup
	TOKENRELAY_FUZZ_EXAMPLES=2500 $(UV) run --frozen pytest tests/fuzz -p no:randomly --timeout 0

# The upstream-pool figures (tests/e2e/test_pools.py, against the emulator): 3 deployments with
# one killed and one answering 429s, then one drained: served, client errors, retries,
# fallbacks, billed == delivered; and the prompt-cache read share with and without affinity.
pools-report: setup
	$(UV) run --frozen python -m bench.pools_report

# Issue 21's chaos run: 3 replicas on PostgreSQL + a Redis of its own, 5,000 requests over the
# four client APIs with vendor faults and client disconnects, two SIGKILLs and a Redis pause;
# prints Redis - database balance, holds left and requests billed beyond the policy (bench/chaos.py).
chaos: setup
	$(UV) run --frozen python -m bench.chaos --requests $(or $(REQUESTS),5000)
