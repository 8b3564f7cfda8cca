"""Every error the package defines sits under ``OmniFlashError`` and is drawn in the tree that
``omniflash_prefect/core/errors.py`` documents, so ``except OmniFlashError`` catches all of them
and a reader finds each in one picture."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import pytest

import omniflash_prefect
from omniflash_prefect.core import errors


def defined_errors() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module_info in pkgutil.walk_packages(omniflash_prefect.__path__, "omniflash_prefect."):
        name = module_info.name
        if ".emulator" in name or name.rpartition(".")[2] in {"__main__"}:
            continue  # the emulator plays the provider and has errors of its own
        module = importlib.import_module(name)
        for attribute, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == name
                and not attribute.startswith("_")
            ):
                found[f"{name}.{attribute}"] = value
    return [found[key] for key in sorted(found)]


@pytest.mark.parametrize("error", defined_errors(), ids=lambda error: error.__name__)
def test_every_error_is_an_omniflash_error_drawn_in_the_tree(error: type[BaseException]) -> None:
    assert issubclass(error, errors.OmniFlashError)
    assert re.search(rf"[─ ]{error.__name__}\b", errors.__doc__ or "")


def test_usage_errors_are_still_the_builtin_errors_python_code_expects() -> None:
    assert issubclass(errors.UsageError, ValueError)
    assert issubclass(errors.BlockTypeError, TypeError)
