"""Spend limits shared by every run, worker and machine that names them: the public names.

A limit is set with ``omniflash spend-limit set NAME --per-day AMOUNT`` (or
:func:`define_spend_limit`) and named by runs with ``spend_limit=NAME`` / ``--spend-limit NAME``.
Its ledger (:class:`SpendLimit`, the rule in :mod:`omniflash_prefect.core.spending`) is an
:class:`OmniFlashSpendLimit` block on the Prefect server, changed under a one-slot global
concurrency limit (:mod:`omniflash_prefect.video.spend_limits`); a run holds its reservations
through a :class:`SpendLimitHold` (:mod:`omniflash_prefect.video.spend_holds`).
"""

from omniflash_prefect.core.spending import SpendLimit, SpendLimitView
from omniflash_prefect.video.spend_holds import SpendLimitHold
from omniflash_prefect.video.spend_limits import (
    OmniFlashSpendLimit,
    define_spend_limit,
    delete_spend_limit,
    list_spend_limits,
    read_spend_limit,
    record_settlement,
)

__all__ = [
    "OmniFlashSpendLimit",
    "SpendLimit",
    "SpendLimitHold",
    "SpendLimitView",
    "define_spend_limit",
    "delete_spend_limit",
    "list_spend_limits",
    "read_spend_limit",
    "record_settlement",
]
