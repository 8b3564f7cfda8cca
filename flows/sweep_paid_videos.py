"""Deployment entrypoint ``flows/sweep_paid_videos.py:sweep_paid_videos`` (see ``prefect.yaml``).

The flow lives in :mod:`omniflash_prefect.video.flows`. Run this file to serve it without a work
pool, sweeping every 30 minutes.
"""

from omniflash_prefect.video.flows import sweep_paid_videos

__all__ = ["sweep_paid_videos"]

if __name__ == "__main__":
    sweep_paid_videos.serve(name="sweep-paid-videos", interval=1800)
