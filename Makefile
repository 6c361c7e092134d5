# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv if it is missing and installs what it needs.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
BACKENDS := tensorflow jax torch
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONWARNINGS := ignore::DeprecationWarning
export NO_MKDOCS_2_WARNING := 1
# pytest-xdist workers per backend: one per core, at most 4 (each worker
# holds a backend, about 1.5 GB with TensorFlow). A test uses about one
# core: Keras' tracing and dispatch are single-threaded Python. More
# workers than cores slow the tests that start processes of their own
# (the lab's worker tests took 46-68 s with 3 workers on 2 cores, 20-31 s
# with 2). --dist loadgroup keeps the files marked with an xdist_group on
# one worker, so that a module fixture (a tune run, a shared engine) runs
# once rather than once on each worker.
JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -gt 4 ] && n=4; echo $$n)

.PHONY: demo test test-tensorflow test-jax test-torch docs bench install-demo install-test clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# The stamps re-run the install when the package metadata changes.
# uv installs the rest: the same versions as pip, in a fifth of the time
# (11 s against 55 s for the test extras on a 2-core machine). Unlike pip,
# uv writes no bytecode unless asked: without it every Python process
# (each test worker, each process a test starts) compiled TensorFlow, JAX
# and Keras from source, about 5 s each, and more where
# PYTHONDONTWRITEBYTECODE is set (a fresh clone's suite took 108 s longer
# than the same suite on an installed environment). Compiling at install
# takes about 35 s.
UV := $(VENV)/bin/uv
$(UV): | $(PY)
	$(PIP) install --quiet uv

$(VENV)/.demo-installed: setup.cfg pyproject.toml | $(UV)
	$(UV) pip install --quiet --compile-bytecode --python $(PY) -e ".[tensorflow,lab]"
	touch $@

# torch==2.13.0 first, by pip: it is the CPU build; asked for by a range
# alone, a CUDA build of several GB would be fetched. uv then keeps it, as
# it satisfies the range, and compiles the bytecode of what it installed
# only; torch's is compiled on both cores by compileall (7 s), where pip's
# own compiling, one file after another, took 24 s. (One file of torch's
# internal test helpers is Python 3.12 syntax, which pip skips too.)
$(VENV)/.test-installed: setup.cfg pyproject.toml | $(UV)
	$(PIP) install --quiet --no-compile torch==2.13.0
	$(PY) -m compileall -q -j 0 -x py312_intrinsics \
	  "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/torch" > /dev/null
	$(UV) pip install --quiet --compile-bytecode --python $(PY) -e ".[tensorflow,jax,torch,lab,postgres,test,docs]"
	touch $@

install-demo: $(VENV)/.demo-installed
install-test: $(VENV)/.test-installed

# The main job: optlab compare on its defaults (digits, MLP, the seed
# family and adam_then_sgd), report written to optlab-report/.
demo: install-demo
	$(PY) -m keras_optlab compare --out optlab-report

# One pytest process per backend: KERAS_BACKEND is read when keras is imported.
# Each pass prints its wall time, so that the suite's growth shows when it
# happens (budget: 10 minutes in all on 2 cores, CONTRIBUTING.md).
test: install-test
	@status=0; times=""; for backend in $(BACKENDS); do \
	  echo "=== pytest, KERAS_BACKEND=$$backend ==="; \
	  start=$$(date +%s); \
	  KERAS_BACKEND=$$backend $(PY) -m pytest -q -p no:cacheprovider -n $(JOBS) --dist loadgroup --durations=10 || status=1; \
	  times="$$times $$backend $$(( $$(date +%s) - start )) s;"; \
	done; \
	echo "=== mkdocs build --strict ==="; \
	$(VENV)/bin/mkdocs build --strict --quiet --site-dir "$$(mktemp -d)" || status=1; \
	echo "=== wall time per backend:$$times"; \
	exit $$status

test-%: install-test
	KERAS_BACKEND=$* $(PY) -m pytest -q -p no:cacheprovider -n $(JOBS) --dist loadgroup

# Benchmarks are not tests: they print ratios measured in one run.
bench: install-test
	$(PY) bench/run.py

docs: install-test
	$(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) site build *.egg-info optlab-report*
