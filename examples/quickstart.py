from prefect import flow

from omniflash_prefect import ArchivedVideo, VideoRequest, archive_video, poll_video, submit_video


@flow(name="quickstart")
def quickstart(prompt: str, credentials_block: str = "omniflash") -> ArchivedVideo:
    request = VideoRequest(prompt=prompt, duration=4, resolution="720p", aspect_ratio="16:9")
    task_id = submit_video(request, credentials_block=credentials_block)  # paid, at most once
    video = poll_video(task_id, credentials_block=credentials_block)  # waits until it is done
    archived: ArchivedVideo = archive_video(
        video, request=request, credentials_block=credentials_block
    )
    return archived  # where it is, its SHA-256, size, cost and media check


if __name__ == "__main__":
    print(quickstart("A paper boat drifts across a sunlit pond, slow tracking shot").location)
