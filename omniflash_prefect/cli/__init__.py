"""The ``omniflash`` command line; ``omniflash_prefect.cli:main`` is its entry point."""

from omniflash_prefect.cli.program import app, main

__all__ = ["app", "main"]
