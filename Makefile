# Math for Deep Learning: the two commands are `make lab` and `make test`.
# Every target creates the virtual environment first if it is missing.

VENV    ?= .venv
# Any Python the pinned packages have wheels for (3.11 to 3.14; torch 2.13.0 and numpy 2.4.6 set the range).
PYTHON  ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3.13 || command -v python3.14 || command -v python3)
PY      := $(VENV)/bin/python
# Two stamps: `make lab` installs what the labs run with; `make test` adds the test tools.
STAMP   := $(VENV)/.runtime-stamp
TEST_STAMP := $(VENV)/.test-stamp
ARGS    ?=
# `make lab` serves LAB_ROOT (labs/ and TROUBLESHOOTING.md, which failed checks link to) and opens
# LABS_DIR in it; the browser test serves a scratch copy. MODE=student hides nbgrader's instructor
# panels and JupyterLab's news pop-up; MODE=instructor keeps them (config: jupyter/<MODE>/).
LAB_ROOT ?= .
LABS_DIR ?= labs
MODE    ?= student
# pytest workers: all cores by default (pytest-xdist).
WORKERS ?= auto
# JupyterLab refuses to run as root without this flag (containers, CI).
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: help env test-env browser lab test release labs check-labs review grade clean

help:
	@echo "make lab     set up the environment and open the labs in JupyterLab (ARGS=--no-browser for headless)"
	@echo "make lab MODE=instructor   the same with nbgrader's Create Assignment and Formgrader panels"
	@echo "make test    set up the environment and run every test"
	@echo "make labs    regenerate labs/ from solutions/ with nbgrader (instructors)"
	@echo "make review  execute every solution notebook and render it to HTML under build/review/"
	@echo "make grade SUBMITTED=<dir> OUT=<dir>  grade a class (nbgrader layout; GRADE_ARGS=--loose for LMS files)"
	@echo "make release DEST=<dir>  build the student release (a git repository without the answer key)"

# A .venv left by another Python (the interpreter it points to is gone, was upgraded to another
# minor version, or is outside 3.11-3.14, or PYTHON=... asks for another version) never works:
# it is removed here, before make looks at the stamps, and rebuilt below.
VENV_PROBLEM := $(if $(filter help clean,$(MAKECMDGOALS)),,$(shell test ! -e $(VENV) || $(PY) -c \
  'import sys, sysconfig, os; v = sys.version_info[:2]; cfg = open(os.path.join(sys.prefix, "pyvenv.cfg")).read(); \
   same = any("%s = %d.%d." % ((key,) + v) in cfg for key in ("version", "version_info")); \
   ok = (3, 11) <= v < (3, 15) and os.path.isdir(sysconfig.get_path("purelib")) and same; \
   print("" if ok else "it was built by Python %s, which this course does not support or no longer finds its packages" % ".".join(map(str, v)))' \
  2>/dev/null || echo "its Python no longer runs (moved or uninstalled)"))
ifeq ($(origin PYTHON),command line)
VENV_PROBLEM += $(if $(VENV_PROBLEM),,$(shell test ! -x $(PY) || test "$$($(PY) -c 'import sys; print(sys.version_info[:2])')" = "$$($(PYTHON) -c 'import sys; print(sys.version_info[:2])')" || echo "PYTHON=$(PYTHON) is another version"))
endif
ifneq ($(strip $(VENV_PROBLEM)),)
$(info Rebuilding $(VENV): $(strip $(VENV_PROBLEM)).)
$(shell rm -rf $(VENV))
endif

# Runtime only (what `make lab`, `make grade` and the instructor tools need); never apt.
# The stamp is rebuilt when the dependency list changes.
$(STAMP): pyproject.toml
	@test -x $(PY) || { echo "Creating $(VENV) with $(PYTHON) ($$($(PYTHON) --version 2>&1))"; $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --disable-pip-version-check -q --upgrade pip
	$(PY) -m pip install --disable-pip-version-check -q -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (mdl)" >/dev/null
	@touch $(STAMP)

# The test tools on top (pytest, hypothesis, nbval, Playwright), the [cluster] extra (make grade on
# Dask: its tests run in every `make test`) and Chromium for the browser test.
$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[test,cluster]'
	@$(MAKE) --no-print-directory browser
	@touch $(TEST_STAMP)

env: $(STAMP)

test-env: $(TEST_STAMP)

# Debian's Chromium for the real-browser test (tests/browser, Playwright drives it).
# Best effort: only as root with apt-get; without it that test is skipped, never failed.
browser:
	@test -x /usr/bin/chromium || { command -v apt-get >/dev/null && test "$$(id -u)" = 0 \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "Chromium not installed (needs root and apt-get): the browser test will be skipped"

# Opens labs/ as it is: never regenerates or overwrites a student's notebook.
lab: env
	@test -d jupyter/$(MODE) || { echo "MODE must be student or instructor (jupyter/$(MODE) is missing)"; exit 2; }
	JUPYTER_CONFIG_PATH="$(CURDIR)/jupyter/$(MODE)$${JUPYTER_CONFIG_PATH:+:$$JUPYTER_CONFIG_PATH}" \
	  $(VENV)/bin/jupyter lab --ServerApp.root_dir=$(LAB_ROOT) --LabApp.default_url=/lab/tree/$(LABS_DIR) \
	  $(ROOT_FLAG) $(ARGS)

# Every test in one pytest run (xdist groups keep shared fixtures on one worker): the solution
# notebooks run once, under nbgrader's autograde, and that run serves every test that needs one.
# `pytest --nbval-lax solutions/NN_topic` runs one notebook's cells alone, as a quick check.
# The last line says how long it all took (the budget: under 10 minutes on 2 cores).
test: test-env
	@start=$$(date +%s); \
	$(PY) -m pytest -n $(WORKERS) --dist loadgroup tests $(ARGS); status=$$?; \
	elapsed=$$(( $$(date +%s) - start )); \
	echo "make test: $$([ $$status = 0 ] && echo passed || echo FAILED) in $$((elapsed / 60)) min $$((elapsed % 60)) s" \
	  "of wall time ($$(nproc) cores, pytest -n $(WORKERS))"; exit $$status

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

# The student course as a git repository ready to push (labs, helpers, visible checks; no answers):
# DEST=<dir> (a new folder, or an earlier release checkout to update with a new commit).
release: env
	@test -n "$(DEST)" || { echo "usage: make release DEST=<dir>"; exit 2; }
	$(PY) -m coursetools.release "$(DEST)" $(RELEASE_ARGS)

clean:
	rm -rf build .pytest_cache .hypothesis
