"""``python -m omniflash_prefect`` is the ``omniflash`` command."""

from omniflash_prefect.cli import main

main()
