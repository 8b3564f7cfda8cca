"""Deployment entrypoint ``flows/generate_video_batch.py:generate_video_batch`` (``prefect.yaml``).

The flow lives in :mod:`omniflash_prefect.batches.flow`, so pipelines can import it from the
installed package. Run this file to serve it without a work pool.
"""

from omniflash_prefect.batches.flow import generate_video_batch

__all__ = ["generate_video_batch"]

if __name__ == "__main__":
    generate_video_batch.serve(name="generate-video-batch")
