"""The pure protocol: requests and their rules, answers, errors, retry and polling schedules.

Nothing here does I/O or imports Prefect or a network library (``tests/unit/test_layers.py``
proves it), so every rule is unit-tested without a server and the client, the tasks and the
emulator's agreement tests all read the same definitions.
"""
