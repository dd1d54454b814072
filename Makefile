# ray-iap-proxy — every workflow is one make target. See README.md.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo
PYTEST_ARGS ?=
FUZZ_SECONDS ?= 60
SOAK_SECONDS ?= 120

K8S_APT_PACKAGES :=
K8S_PIP_PACKAGES :=
-include mk/*.mk

APT_PACKAGES := chromium $(K8S_APT_PACKAGES)

.PHONY: help venv manifests check test test-fast lint docs demo bench fuzz soak screenshots clean print-apt-packages

help:
	@echo "make demo         run Ray + the proxy + dev-iap locally and show what it does (ONCE=1: showcase, exit)"
	@echo "make test         unit, integration, end-to-end (real Ray, ray CLI, Chromium) and manifest tests"
	@echo "make test-fast    unit and integration tests only"
	@echo "make check        ruff check, ruff format --check, mypy --strict and the fast tests (CI runs it first)"
	@echo "make lint         ruff check, ruff format --check, mypy --strict"
	@echo "make docs         regenerate the generated parts of docs/ (the configuration reference)"
	@echo "make bench        proxy overhead vs direct upstream and the Apache peer"
	@echo "make fuzz         longer fuzzing of token and path parsing (FUZZ_SECONDS=$(FUZZ_SECONDS) per target)"
	@echo "make soak         mixed traffic through a real proxy process for SOAK_SECONDS=$(SOAK_SECONDS)"
	@echo "make screenshots  re-take docs/img/*.png from the browser tests"
	@echo "make manifests    render every Kubernetes overlay to build/k8s/<overlay>.yaml"
	@echo "make venv         the project venv with the test tools ($(VENV)); make demo needs only the proxy and Ray"
	@echo "make clean        remove build/, .demo/ and the tools' caches"

# Two stages of one venv: the demo needs the proxy and Ray only; the tests add their tools. The
# manifest tools (kubectl, hadolint, checkov) live in their own venvs under build/tools, off PATH.
venv: $(STAMP)
$(DEMO_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[ray]'
	touch $@
$(STAMP): $(DEMO_STAMP)
	$(BIN)/pip install -q -e '.[test,ray]' $(K8S_PIP_PACKAGES)
	touch $@

test: venv
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) tests

test-fast: venv
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit tests/integration

LINTED := proxy devkit tests bench scripts

lint: venv
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy proxy

check: lint test-fast

docs: venv
	$(BIN)/python -m proxy.settings.reference --write docs/configuration.md
	$(BIN)/python -m proxy.telemetry.reference --write docs/security-teams.md

demo: $(DEMO_STAMP)
	$(BIN)/python -m scripts.demo $(if $(ONCE),--once,)

BENCH_APT_PACKAGES := apache2 libapache2-mod-oauth2 wrk librsvg2-bin

bench: venv
	@command -v wrk >/dev/null && command -v apache2 >/dev/null && command -v rsvg-convert >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq --no-install-recommends $(BENCH_APT_PACKAGES); }
	$(BIN)/python -m bench

fuzz: venv
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(BIN)/python -m pytest -q tests/fuzz

soak: venv
	$(BIN)/python -m scripts.soak --seconds $(SOAK_SECONDS)

screenshots: venv
	UPDATE_SCREENSHOTS=1 $(BIN)/python -m pytest -q tests/browser

print-apt-packages:
	@echo $(APT_PACKAGES)

clean:
	rm -rf build .demo .pytest_cache .mypy_cache .ruff_cache .hypothesis
