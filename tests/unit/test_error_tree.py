"""Every error the package defines sits under ``OmniFlashError`` and is drawn in the tree that
``omniflash_prefect/errors.py`` documents, so ``except OmniFlashError`` catches all of them
and a reader finds each in one picture."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import pytest

import omniflash_prefect
from omniflash_prefect import errors


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


#: What each error means for money and for the shell, read by batches, spend limits and the
#: command line. A new error class must be added here: the test below walks the whole tree.
MEANINGS: dict[str, tuple[bool, str]] = {
    "OmniFlashError": (True, "error"),
    "UsageError": (False, "invalid"),
    "BlockTypeError": (False, "invalid"),
    "CredentialsBlockNotFoundError": (False, "invalid"),
    "CommandUsageError": (False, "invalid"),
    "LocalServerError": (False, "error"),
    "InvalidVideoRequestError": (False, "invalid"),
    "InvalidImageFileError": (False, "invalid"),
    "InvalidTaskIdError": (False, "invalid"),
    "APIError": (True, "error"),
    "InvalidRequestError": (False, "refused"),
    "AuthenticationError": (False, "refused"),
    "PaymentRequiredError": (False, "refused"),
    "RateLimitedError": (False, "refused"),
    "NotFoundError": (False, "refused"),
    "ServerError": (True, "error"),
    "UnexpectedResponseError": (True, "error"),
    "APIConnectionError": (True, "error"),
    "APITimeoutError": (True, "error"),
    "SubmissionOutcomeUnknownError": (True, "error"),
    "SubmissionReleaseError": (False, "invalid"),
    "InsufficientBalanceError": (False, "refused"),
    "SpendLimitReachedError": (False, "refused"),
    "SpendLimitNotFoundError": (False, "invalid"),
    "VideoRunLostError": (True, "error"),
    "RemoteRunError": (True, "error"),
    "RunCancelledError": (True, "cancelled"),
    "ManifestError": (False, "invalid"),
    "InvalidManifestError": (False, "invalid"),
    "GenerationError": (True, "failed"),
    "GenerationFailedError": (False, "failed"),
    "GenerationCancelledError": (False, "failed"),
    "PollTimeoutError": (True, "failed"),
    "DownloadError": (True, "error"),
    "UnsafeDownloadURLError": (True, "error"),
    "VideoTooLargeError": (True, "error"),
    "VideoExpiredError": (True, "error"),
    "MediaCheckError": (True, "not_as_asked"),
}


@pytest.mark.parametrize("error", defined_errors(), ids=lambda error: error.__name__)
def test_every_error_says_once_whether_it_was_charged_and_how_a_command_ends(
    error: type[BaseException],
) -> None:
    """Each class's two attributes are the one answer to "may this have been paid for?" and
    "what does the shell hear?"; a refusal or invalid input is never charged."""
    assert issubclass(error, errors.OmniFlashError)
    assert (error.charged, error.exit_status) == MEANINGS[error.__name__]
    if error.exit_status in ("invalid", "refused"):
        assert not error.charged
    assert errors.may_have_been_charged(error) is error.charged


def test_the_meanings_table_lists_exactly_the_tree() -> None:
    assert sorted(MEANINGS) == sorted(error.__name__ for error in defined_errors())


@pytest.mark.parametrize("error", [ValueError("a bug"), RuntimeError("elsewhere"), KeyError])
def test_an_error_that_is_not_the_packages_counts_as_charged(
    error: BaseException | type[BaseException],
) -> None:
    assert errors.may_have_been_charged(error) is True


def test_usage_errors_are_still_the_builtin_errors_python_code_expects() -> None:
    assert issubclass(errors.UsageError, ValueError)
    assert issubclass(errors.BlockTypeError, TypeError)
