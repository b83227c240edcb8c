# make demo   run the demo (a local cluster of 4 engines, map, task history, resubmit)
# make test   run the whole test suite (first installing, as root, the Slurm, Grid Engine,
#             PBS, Open MPI and sshd that the launcher tests run engines through)
# make test-cluster   install those and run only the launcher tests
# make docs   build the documentation site into docs/_build/html (warnings are errors)
# Both create .venv/ on first use and install taskhub into it; a stamp file remembers the
# install so later runs start at once (it is redone when setup.cfg or pyproject.toml change).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-cluster cluster-infra configs clean distclean

demo: $(VENV)/.installed-demo
	$(PY) -m taskhub.demo

test: cluster-infra browser $(VENV)/.installed-test
	$(PY) -m pytest -q

test-cluster: cluster-infra $(VENV)/.installed-test
	$(PY) -m pytest -q tests/test_launchers_*.py

# Idempotent (a stamp under /var/lib makes later runs instant); not root: says so, installs nothing.
cluster-infra:
	bash tests/infra/setup_batch_systems.sh

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-demo: $(PY) setup.cfg pyproject.toml
	$(VENV)/bin/pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(PY) setup.cfg pyproject.toml
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

# Refresh the commented config files of profiles/default/ after an option changed.
configs: $(VENV)/.installed-demo
	$(PY) -c "from taskhub.cluster.app import write_default_configs as w; w('profiles/default')"

# Build and test leftovers; keeps .venv/ (see distclean).
clean:
	rm -rf build dist *.egg-info .pytest_cache .hypothesis $(VENV)/.installed-*
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)

# make bench   run the benchmark suite: taskhub side by side with ipyparallel, dask,
#              ProcessPoolExecutor and a raw pyzmq floor (~20 min; creates bench/.peers/ venvs
#              on first use). Quick smoke run: make bench BENCH_ARGS=--quick (~2 min).
BENCH_ARGS ?=
.PHONY: bench
bench: $(VENV)/.installed-test
	$(PY) -m bench $(BENCH_ARGS)

# Debian's chromium, which the web view's browser tests (tests/test_web.py) drive through
# Playwright; installed once, as root (`playwright install` cannot download here).
.PHONY: browser
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q chromium; \
		else echo "browser: /usr/bin/chromium is missing and only root can install it" \
			"(apt-get install chromium); tests/test_web.py needs it"; fi; \
	fi

.PHONY: docs
docs: $(VENV)/.installed-docs
	$(PY) -m sphinx -W --keep-going -q -b html -d docs/_build/doctrees docs docs/_build/html
	@echo "docs: docs/_build/html/index.html"

$(VENV)/.installed-docs: $(PY) setup.cfg pyproject.toml
	$(VENV)/bin/pip install -q -e '.[docs]'
	touch $@
