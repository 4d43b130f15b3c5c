# The two set-up-free commands of the README. Each installs what it needs first.
PY ?= python3
WORKDIR ?= runs/demo

.PHONY: install install-test test demo

install:
	$(PY) -m pip install -q -e .

install-test:
	$(PY) -m pip install -q -e '.[test]'

test: install-test
	$(PY) -m pytest -q -n 2 --durations=15 tests

demo: install
	$(PY) experiments/main_job.py --workdir $(WORKDIR)
