# make demo   run the demo (a local cluster of 4 engines, map, task history, resubmit)
# make test   run the whole test suite
# Both create .venv/ on first use and install taskhub into it; a stamp file remembers the
# install so later runs start at once (it is redone when setup.cfg or pyproject.toml change).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test configs clean distclean

demo: $(VENV)/.installed-demo
	$(PY) -m taskhub.demo

test: $(VENV)/.installed-test
	$(PY) -m pytest -q

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
