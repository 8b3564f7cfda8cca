"""Deployment entrypoint ``flows/generate_video.py:generate_video`` (see ``prefect.yaml``).

The flow itself lives in :mod:`omniflash_prefect.video.flows`, so pipelines can also import it
from the installed package and call it as a subflow. Run this file to serve it without a work pool.
"""

from omniflash_prefect.video.flows import generate_video

__all__ = ["generate_video"]

if __name__ == "__main__":
    generate_video.serve(name="generate-video")
