"""What every video of a run shares: the account that pays, where the videos go, and where their
records are kept. Named once by the caller (:class:`VideoSetup`, the flows' and tasks' parameters
of the same names), loaded once where the run starts (:class:`LoadedSetup`), so a wrong block
fails the run before anything is paid for, and a reader can follow each setting from the flow to
the step that uses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.blocks.core import Block
from prefect.filesystems import LocalFileSystem, WritableFileSystem
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from omniflash_prefect.errors import BlockTypeError, UsageError
from omniflash_prefect.settings import OmniFlashSettings
from omniflash_prefect.video.claims import current_record_storage
from omniflash_prefect.video.credentials import read_block_once


class VideoSetup(BaseModel):
    """The blocks and places every video of a run shares, by name (JSON-ready, so a batch hands
    them to its rows, a deployment run or a worker unchanged)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    credentials_block: str | None = Field(
        default=None,
        description="Name of an OmniFlashCredentials block; default: OMNIFLASH_* settings.",
    )
    storage_block: str | None = Field(
        default=None,
        description="'<type-slug>/<name>' of a writable filesystem block for the videos, e.g. "
        "'s3-bucket/videos'; default: archive_dir.",
    )
    archive_dir: str | None = Field(
        default=None,
        description="A local directory for the videos, made absolute where the run starts; "
        "default: OMNIFLASH_ARCHIVE_DIR (./videos).",
    )
    archive_prefix: str = Field(
        default="omniflash", description="Key prefix of the archived videos and their sidecars."
    )
    result_storage_block: str | None = Field(
        default=None,
        description="'<type-slug>/<name>' of a writable filesystem block that keeps task ids and "
        "archive records (default: Prefect's result storage); share one, e.g. an S3 bucket, "
        "between workers that may resume each other's videos.",
    )

    @field_validator("archive_dir")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        return str(Path(value).expanduser().resolve()) if value else None

    @model_validator(mode="after")
    def _one_archive_target(self) -> VideoSetup:
        if self.archive_dir and self.storage_block:
            raise UsageError("give archive_dir or storage_block, not both")
        return self

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, Any]) -> VideoSetup:
        """The setup named by a flow's or task's parameters (the others are ignored)."""
        return cls.model_validate({k: v for k, v in parameters.items() if k in cls.model_fields})

    def parameters(self) -> dict[str, Any]:
        """These settings as the parameters of ``generate_video`` and friends."""
        return self.model_dump()

    async def load(self) -> LoadedSetup:
        """Read the named blocks (once per run: see :func:`read_block_once`)."""
        storage = (
            await load_storage(self.storage_block)
            if self.storage_block
            else default_storage(self.archive_dir)
        )
        results = (
            await load_storage(self.result_storage_block) if self.result_storage_block else None
        )
        return LoadedSetup(
            named=self, storage=storage, records=await current_record_storage(results)
        )


@dataclass(frozen=True)
class LoadedSetup:
    """A run's setup with its blocks read: the storage the videos go to, and where submission
    and archive records are kept (the named result storage block, else the run's result
    storage)."""

    named: VideoSetup
    storage: WritableFileSystem
    records: WritableFileSystem

    @property
    def credentials_block(self) -> str | None:
        return self.named.credentials_block

    @property
    def archive_prefix(self) -> str:
        return self.named.archive_prefix

    def destination(self) -> VideoSetup:
        """The setup as a submission records it for a sweep: the archive directory made explicit
        when the videos go to the default one of this process."""
        if self.named.storage_block or self.named.archive_dir:
            return self.named
        basepath = getattr(self.storage, "basepath", None)
        return self.named.model_copy(update={"archive_dir": basepath})


def default_storage(archive_dir: str | Path | None = None) -> WritableFileSystem:
    """The local directory ``archive_dir``, else ``OMNIFLASH_ARCHIVE_DIR`` (default ``./videos``)
    of the process that runs the video."""
    directory = Path(archive_dir) if archive_dir else OmniFlashSettings().archive_dir
    return LocalFileSystem(basepath=str(directory.expanduser().resolve()))


async def load_storage(storage_block: str) -> WritableFileSystem:
    """The writable filesystem block named ``<type-slug>/<name>`` (read once per run)."""
    if "/" not in storage_block:
        raise UsageError(
            f"storage_block {storage_block!r} must be '<block-type-slug>/<block-name>', "
            "e.g. 's3-bucket/videos' or 'local-file-system/archive'"
        )
    # Loading through the base class reads the block type from the '<slug>/' part of the name.
    block: object = await read_block_once(storage_block, Block.aload)
    if not isinstance(block, WritableFileSystem):
        raise BlockTypeError(f"block {storage_block!r} is not a writable filesystem")
    return block
