# Every target bootstraps its own environment: uv (from PyPI into .tools/ when it is not on PATH),
# then the locked dependencies into .venv/. Only Python >= 3.11 and make are needed; `make test`
# also installs Chromium for the UI tests when it can (see `browser` below).

PYTHON ?= python3
UV_VERSION := 0.13.9
TWINE_VERSION := 7.0.0
UV ?= $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
RUN := $(UV) run --frozen --no-sync

# Never download a Python build: use the interpreter that is on the machine.
export UV_PYTHON_DOWNLOADS := never

# `make test BROWSER_TESTS=no` leaves out the tests that look at the Prefect UI in Chromium
# (marked `browser`), and so needs no browser.
BROWSER_TESTS ?= yes
PYTEST_ARGS := $(if $(filter no,$(BROWSER_TESTS)),-m "not browser")

# The lowest versions pyproject.toml allows for its direct dependencies (uv's `lowest-direct`
# resolution; what they pull in is the newest published before LOWEST_EXCLUDE_NEWER, so the
# environment is the same on every machine) go into .venv-lowest/, never .venv/, and run
# LOWEST_TESTS: the unit tests and a few Prefect tests that touch every dependency (blocks and
# flows, S3 through prefect-aws, the emulator's clips through PyAV and Pillow, the demo).
LOWEST_EXCLUDE_NEWER := 2026-12-06T00:00:00Z
LOWEST_TESTS := tests/unit \
	tests/prefect/test_blocks.py \
	tests/prefect/test_generate_video_flow.py \
	tests/prefect/test_archive_storage.py \
	tests/prefect/test_cli_demo.py

.PHONY: demo test browser lint format typecheck docs pytest lowest dist sync clean

demo: .venv/.synced
	$(RUN) omniflash demo

# `browser` comes first: a machine that cannot run the UI tests stops before anything runs.
test: browser lint typecheck docs dist pytest lowest

lint: .venv/.synced
	$(RUN) ruff check .
	$(RUN) ruff format --check .

format: .venv/.synced
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

typecheck: .venv/.synced
	$(RUN) mypy

# The documentation site (mkdocs.yml, docs/) into site/, warnings as errors: a broken link, a
# missing snippet, a docstring mkdocstrings cannot read or an out-of-date command-line reference
# fails it (not with --quiet, which hides the warnings strict mode counts). Nothing is fetched
# (no web fonts).
docs: .venv/.synced
	NO_MKDOCS_2_WARNING=1 $(RUN) mkdocs build --strict

pytest: browser .venv/.synced
	$(RUN) pytest $(PYTEST_ARGS)

# The UI tests drive the Chromium that OMNIFLASH_CHROMIUM names, else Debian's `chromium` on
# PATH (tests/support/browser.py). When there is none: as root, apt-get installs it (its output
# shown only on failure); otherwise make stops here with one message saying what to do.
define NO_CHROMIUM
The tests that look at the Prefect UI need Chromium; make installs it only as root. Nothing was
run. Either:
  install it (Debian, Ubuntu):   sudo apt-get install chromium
  or point the tests at one:     make test OMNIFLASH_CHROMIUM=/path/to/chromium
  or run without the UI tests:   make test BROWSER_TESTS=no
endef
export NO_CHROMIUM

browser:
ifneq ($(BROWSER_TESTS),no)
	@if [ -n "$$OMNIFLASH_CHROMIUM" ]; then \
	    if ! [ -f "$$OMNIFLASH_CHROMIUM" ] || ! [ -x "$$OMNIFLASH_CHROMIUM" ]; then \
	        printf 'make: OMNIFLASH_CHROMIUM=%s is not an executable file.\n%s\n' \
	            "$$OMNIFLASH_CHROMIUM" "$$NO_CHROMIUM" >&2; \
	        exit 1; \
	    fi; \
	elif ! command -v chromium >/dev/null; then \
	    if [ "$$(id -u)" != 0 ]; then \
	        printf 'make: there is no `chromium` on PATH.\n%s\n' "$$NO_CHROMIUM" >&2; \
	        exit 1; \
	    fi; \
	    log=$$(mktemp); \
	    if ! { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; } \
	        >"$$log" 2>&1; then \
	        cat "$$log" >&2; rm -f "$$log"; exit 1; \
	    fi; \
	    rm -f "$$log"; \
	fi
endif

lowest: .venv-lowest/.synced
	.venv-lowest/bin/python -m pytest $(LOWEST_TESTS)

.venv-lowest/.synced: pyproject.toml Makefile | $(UV)
	$(UV) venv --quiet --allow-existing .venv-lowest
	$(UV) pip compile --quiet pyproject.toml --group test --resolution lowest-direct \
		--exclude-newer $(LOWEST_EXCLUDE_NEWER) --python .venv-lowest/bin/python \
		>.venv-lowest/requirements.txt
	$(UV) pip sync --quiet --python .venv-lowest/bin/python .venv-lowest/requirements.txt
	$(UV) pip install --quiet --python .venv-lowest/bin/python --no-deps --editable .
	touch $@

# The sdist and the wheel a release would upload, into dist/, checked as PyPI would check them.
dist: | $(UV)
	rm -rf dist
	$(UV) build --quiet
	$(UV) tool run --quiet --from "twine==$(TWINE_VERSION)" twine check --strict dist/*

sync: .venv/.synced

.venv/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen
	touch $@

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

clean:
	rm -rf .venv .venv-lowest .tools dist site .mypy_cache .pytest_cache .ruff_cache
