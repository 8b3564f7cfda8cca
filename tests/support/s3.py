"""S3 on loopback for tests: moto's server, and a fresh bucket with an ``S3Bucket`` block."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import boto3
from moto.server import ThreadedMotoServer
from prefect_aws import AwsClientParameters, AwsCredentials, S3Bucket


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's S3 in server mode on a free loopback port; yields its endpoint URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


class Bucket:
    """A fresh bucket on moto and an S3Bucket block (folder ``renders``) pointing at it."""

    def __init__(self, endpoint: str) -> None:
        self.name = f"videos-{uuid.uuid4().hex[:8]}"
        self.s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        self.s3.create_bucket(Bucket=self.name)
        self.block = S3Bucket(
            bucket_name=self.name,
            bucket_folder="renders",
            credentials=AwsCredentials(
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                region_name="us-east-1",
                aws_client_parameters=AwsClientParameters(endpoint_url=endpoint),
            ),
        )
        self.block_name = f"archive-{uuid.uuid4().hex[:8]}"

    def keys(self) -> list[str]:
        listed = self.s3.list_objects_v2(Bucket=self.name)
        return [item["Key"] for item in listed.get("Contents", [])]

    def read(self, key: str) -> bytes:
        body: bytes = self.s3.get_object(Bucket=self.name, Key=key)["Body"].read()
        return body

    def pending_uploads(self) -> list[str]:
        listed = self.s3.list_multipart_uploads(Bucket=self.name)
        return [upload["Key"] for upload in listed.get("Uploads", [])]
