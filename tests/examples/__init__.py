"""The runnable files of ``examples/``, run against the emulator on the test Prefect server."""
