# Every target bootstraps its own environment: uv (from PyPI into .tools/ when it is not on PATH),
# then the locked dependencies into .venv/. Only Python >= 3.11 and make are needed.

PYTHON ?= python3
UV_VERSION := 0.13.9
UV ?= $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
RUN := $(UV) run --frozen --no-sync

# Never download a Python build: use the interpreter that is on the machine.
export UV_PYTHON_DOWNLOADS := never

.PHONY: demo test lint format typecheck pytest sync clean

demo: .venv/.synced
	$(RUN) omniflash demo

test: lint typecheck pytest

lint: .venv/.synced
	$(RUN) ruff check .
	$(RUN) ruff format --check .

format: .venv/.synced
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

typecheck: .venv/.synced
	$(RUN) mypy

pytest: .venv/.synced
	$(RUN) pytest

sync: .venv/.synced

.venv/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen
	touch $@

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

clean:
	rm -rf .venv .tools .mypy_cache .pytest_cache .ruff_cache
