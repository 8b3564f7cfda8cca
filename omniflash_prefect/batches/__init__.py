"""Many videos in one run: manifests, the spend ledger, the report, and the
``generate_video_batch`` flow that runs each row as a ``generate_video`` run."""
