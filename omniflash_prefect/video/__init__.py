"""One video in Prefect: the credentials block, submission keys and their claims, the submit,
poll and archive tasks, the ``generate_video`` and ``fetch_video`` flows, what the UI shows, and
the Automations that crash runs whose worker was lost."""
