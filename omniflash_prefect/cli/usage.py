"""Checks the commands share, made before any flow run is created or anything is sent.

A command that cannot work should say so at once, with exit code 2 and the option to fix,
rather than start a Prefect server and a run that fails later: missing credentials, options that
contradict each other, a block that does not exist.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from omniflash_prefect.errors import UsageError
from omniflash_prefect.settings import OmniFlashSettings
from omniflash_prefect.video.credentials import load_credentials
from omniflash_prefect.video.setup import load_storage

NO_CREDENTIALS_MESSAGE = (
    "no API key: set OMNIFLASH_API_KEY, or save an OmniFlashCredentials block and pass its name "
    "with --credentials-block; or try it all for free on the built-in emulator with "
    "'omniflash demo'. Nothing was sent."
)


class CommandUsageError(UsageError):
    """Options or settings that make the run impossible; nothing was sent, no run was created."""


def check_credentials_configured(credentials_block: str | None) -> None:
    """The ``OMNIFLASH_*`` settings are valid, and a key is given by them or by a block name."""
    try:
        settings = OmniFlashSettings()
    except ValidationError as exc:
        raise CommandUsageError(f"invalid OMNIFLASH_* setting: {exc}") from None
    if credentials_block is None and settings.api_key is None:
        raise CommandUsageError(NO_CREDENTIALS_MESSAGE)


async def check_credentials_block(credentials_block: str | None) -> None:
    """The named credentials block exists and is one: read the way a run reads it, so the
    command and Python code say the same (:class:`CredentialsBlockNotFoundError`, listing the
    blocks there are; :class:`BlockTypeError`)."""
    if credentials_block:
        await load_credentials(credentials_block)


def check_one_archive_target(
    archive_dir: Path | None, storage_block: str | None, *, why: str = ""
) -> None:
    """A video goes to a local directory or to a storage block, never both."""
    if archive_dir is not None and storage_block:
        raise CommandUsageError(f"--archive-dir and --storage-block are mutually exclusive{why}")


async def check_storage_block(storage_block: str) -> None:
    """The named storage block exists and is a filesystem block."""
    try:
        await load_storage(storage_block)
    except (ValueError, TypeError) as exc:
        raise CommandUsageError(f"--storage-block: {exc}") from None
