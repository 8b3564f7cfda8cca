"""An async flow that turns a local image into a video (image-to-video takes exactly 1 image).

The image is uploaded first (a JPEG, PNG, WebP or GIF up to 20 MB); the URL the provider gives
back goes into `VideoRequest.image_urls`. Then the three steps of one video, each its own task
run: submit (paid), poll until done, archive.

    python examples/local_image_flow.py boat.png "The paper boat drifts across the pond"
"""

from __future__ import annotations

import asyncio
import sys

from prefect import flow

from omniflash_prefect import (
    ArchivedVideo,
    VideoRequest,
    aarchive_video,
    apoll_video,
    asubmit_video,
    aupload_image,
)


@flow(name="animate-image")
async def animate_image(
    image_path: str, prompt: str, credentials_block: str = "omniflash"
) -> ArchivedVideo:
    image_url = await aupload_image(image_path, credentials_block=credentials_block)
    request = VideoRequest(prompt=prompt, duration=4, image_urls=[image_url])
    task_id = await asubmit_video(request, credentials_block=credentials_block)
    video = await apoll_video(task_id, credentials_block=credentials_block)
    return await aarchive_video(
        video, prefix="animated", request=request, credentials_block=credentials_block
    )


if __name__ == "__main__":
    archived = asyncio.run(animate_image(sys.argv[1], sys.argv[2]))
    print(archived.location, archived.sha256)
