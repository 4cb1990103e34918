# `make demo` and `make test` create .venv when it is missing, install into it, and run (`make install DEVICE=gpu`
# for a CUDA machine).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Parity peers (tests only). torchvision goes in with --no-deps: the reachable wheels are CUDA builds and would
# otherwise pull a multi-GB CUDA torch; tests/peers.py makes it importable beside the CPU torch.
TORCH_PIN := torch==2.13.0
PEERS_NODEPS := timm==1.0.31 open_clip_torch==3.3.0 torchvision==0.28.0

# The FusedLayerNorm custom op (external_ops/): built against the venv's Paddle, hence no build isolation.
OPS_SOURCES := external_ops/setup.py $(wildcard external_ops/csrc/*) $(wildcard external_ops/paddlemix_eva_ops/*.py)

.PHONY: demo demo-clip test test-fast lint install install-test ops ops-cuda-check clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# DEVICE=gpu installs the CUDA wheel of Paddle (requirements-gpu.txt) instead of the CPU one
DEVICE ?= cpu

$(VENV)/.installed: $(PY) requirements.txt requirements-$(DEVICE).txt setup.py
	$(PIP) install -r requirements-$(DEVICE).txt
	$(PIP) install --no-deps -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install $(TORCH_PIN)
	$(PIP) install --no-deps $(PEERS_NODEPS)
	$(PIP) install -e ".[test]"
	touch $@

$(VENV)/.installed-ops: $(VENV)/.installed $(OPS_SOURCES)
	$(PIP) install setuptools wheel
	$(PIP) install --no-build-isolation ./external_ops
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test
ops: $(VENV)/.installed-ops

# Compile-checks the CUDA build of the op with nvcc where it is installed (no GPU needed); the Paddle-side
# sources compile against the venv's Paddle headers
ops-cuda-check: $(VENV)/.installed
	PYTHON=$(PY) bash external_ops/check_cuda_compile.sh

# the demo's data (scikit-learn's digits) is not a requirement of the library
demo: $(VENV)/.installed
	$(PIP) install scikit-learn
	$(PY) examples/eva02/run_demo.py

demo-clip: $(VENV)/.installed
	$(PIP) install scikit-learn
	$(PY) examples/evaclip/run_demo.py

# REQUIRE_OPS / REQUIRE_PEERS: the op's tests and the parity tests fail instead of skipping when the op or a
# peer (torch, timm, open_clip) is not importable
REQUIRE := PADDLEMIX_EVA_REQUIRE_OPS=1 PADDLEMIX_EVA_REQUIRE_PEERS=1

# lint and import order (ruff.toml); `make test` runs it before the tests
lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .

test: lint $(VENV)/.installed-test $(VENV)/.installed-ops
	$(REQUIRE) $(PY) -m pytest tests -q -ra

test-fast: lint $(VENV)/.installed-test $(VENV)/.installed-ops
	$(REQUIRE) $(PY) -m pytest tests -q -ra -m "not slow"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache external_ops/build external_ops/*.egg-info
