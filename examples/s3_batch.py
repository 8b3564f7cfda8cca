"""A batch whose manifest is read from an S3 bucket and whose videos are archived to one.

Both buckets are prefect-aws `S3Bucket` blocks, named `'<type-slug>/<name>'`. Create them once
(here one bucket serves both; `bucket_folder` is the key prefix inside it):

    from prefect_aws import AwsCredentials, S3Bucket

    S3Bucket(
        bucket_name="my-omniflash",
        bucket_folder="omniflash",
        credentials=AwsCredentials(region_name="eu-west-1"),
    ).save("omniflash-s3")

then put a JSONL manifest (one request a line) in it, under `manifests/nightly.jsonl`, and run
`python examples/s3_batch.py manifests/nightly.jsonl nightly-2026-11-25`. Running it again with
the same batch id resumes the batch: archived rows are not generated again.
"""

from __future__ import annotations

import sys

from prefect import flow

from omniflash_prefect import BatchReport, BatchRunOptions, generate_video_batch


@flow(name="s3-batch")
def s3_batch(
    manifest: str,
    batch_id: str,
    bucket_block: str = "s3-bucket/omniflash-s3",
    credentials_block: str = "omniflash",
    budget: float | None = None,
) -> BatchReport:
    state = generate_video_batch(
        manifest=manifest,  # a key inside the bucket block
        manifest_block=bucket_block,
        storage_block=bucket_block,  # videos go to <bucket_folder>/nightly/<date>/<task id>.mp4
        archive_prefix="nightly",
        credentials_block=credentials_block,
        options=BatchRunOptions(batch_id=batch_id, max_concurrency=4, budget=budget),
        return_state=True,
    )
    # Completed only when every row was archived; the report says what happened to each row.
    report: BatchReport = state.result(raise_on_failure=False)
    return report


if __name__ == "__main__":
    finished = s3_batch(sys.argv[1], sys.argv[2])
    print(finished.headline())
    for item in finished.items:
        print(item.id, item.status, item.location or item.error)
