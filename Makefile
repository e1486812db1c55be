# make run    — set up (venv, pinned requirements, migrations, private Redis when REDIS_URL is
#               unset, SQLite when DATABASE_URL is unset) and serve on $PORT (5010).
# make test   — the same set-up, then the whole test suite.
# make demo   — make run plus a small simulated fleet and an admin user to watch it with.
# make reload — the running `make run` on $PORT replaces its processes one at a time (SIGHUP to
#               the pid in var/run-$PORT.pid); its port refuses no connection meanwhile.
# make bench  — the benchmarks (bench/), writes BENCHMARKS.md.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test demo reload bench lint clean

$(VENV)/.installed: requirements.txt requirements-test.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] in ((3, 11), (3, 12)), "Python 3.11 or 3.12 is needed"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-test.txt
	touch $@

run: $(VENV)/.installed
	$(PY) -m schedulerproj.launch run

demo: $(VENV)/.installed
	$(PY) -m schedulerproj.demo

test: $(VENV)/.installed
	$(PY) -m schedulerproj.launch exec -- $(PY) -m pytest $(PYTEST_ARGS)

reload: $(VENV)/.installed
	$(PY) -m schedulerproj.launch reload

lint: $(VENV)/.installed
	$(PY) -m ruff check .

bench: $(VENV)/.installed
	$(PY) -m schedulerproj.launch exec -- $(PY) -m bench.run

clean:
	rm -rf $(VENV) var
