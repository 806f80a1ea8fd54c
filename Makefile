# Math for Deep Learning: the two commands are `make lab` and `make test`.
# Every target creates the virtual environment first if it is missing.

VENV    ?= .venv
PYTHON  ?= $(shell command -v python3.11 || command -v python3)
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-stamp
ARGS    ?=
# The folder `make lab` serves (the browser test serves a scratch copy of labs/).
LABS_DIR ?= labs
# pytest workers: all cores by default (pytest-xdist).
WORKERS ?= auto
# JupyterLab refuses to run as root without this flag (containers, CI).
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: help env browser lab test labs check-labs review grade clean

help:
	@echo "make lab     set up the environment and open the labs in JupyterLab (ARGS=--no-browser for headless)"
	@echo "make test    set up the environment and run every test"
	@echo "make labs    regenerate labs/ from solutions/ with nbgrader (instructors)"
	@echo "make review  execute every solution notebook and render it to HTML under build/review/"
	@echo "make grade SUBMITTED=<dir> OUT=<dir>  grade a class (nbgrader layout; GRADE_ARGS=--loose for LMS files)"

# The stamp is rebuilt when the dependency list changes.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q --upgrade pip
	$(PY) -m pip install --disable-pip-version-check -q -e '.[test]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (mdl)" >/dev/null
	@$(MAKE) --no-print-directory browser
	@touch $(STAMP)

env: $(STAMP)

# Debian's Chromium for the real-browser test (tests/browser, Playwright drives it).
# Best effort: only as root with apt-get; without it that test is skipped, never failed.
browser:
	@test -x /usr/bin/chromium || { command -v apt-get >/dev/null && test "$$(id -u)" = 0 \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "Chromium not installed (needs root and apt-get): the browser test will be skipped"

# Opens labs/ as it is: never regenerates or overwrites a student's notebook.
lab: env
	$(VENV)/bin/jupyter lab --notebook-dir=$(LABS_DIR) $(ROOT_FLAG) $(ARGS)

# nbval executes every solution notebook (--dist loadfile keeps each notebook's
# cells on one worker), then the unit, grading, repository and browser tests.
test: env
	$(PY) -m pytest -n $(WORKERS) --dist loadfile --nbval-lax --nbval-current-env solutions $(ARGS)
	$(PY) -m pytest -n $(WORKERS) --dist loadgroup tests $(ARGS)

labs: env
	$(PY) -m coursetools.build_labs

check-labs: env
	$(PY) -m coursetools.build_labs --check

review: env
	$(PY) -m coursetools.review

# Grade a class: SUBMITTED=<dir> (nbgrader layout) OUT=<dir>; extra options in GRADE_ARGS
# (--loose, --workers N, --db URL, see `python -m coursetools.grading --help`).
grade: env
	@test -n "$(SUBMITTED)" -a -n "$(OUT)" || { echo "usage: make grade SUBMITTED=<dir> OUT=<dir> [GRADE_ARGS=...]"; exit 2; }
	$(PY) -m coursetools.grading "$(SUBMITTED)" "$(OUT)" $(GRADE_ARGS)

clean:
	rm -rf build .pytest_cache .hypothesis
