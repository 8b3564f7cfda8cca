"""The README's "Running on a Prefect server" walkthrough, run for real on loopback."""
