"""An S3 endpoint for the benchmarks: moto's server on a free port of 127.0.0.1, one bucket, and the AWS environment
that points this process and its children at it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from genserve import free_port

S3_ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}


@contextlib.contextmanager
def moto_bucket(bucket: str = "bench") -> Iterator[str]:
    """Yields the endpoint's URL, with `bucket` made and os.environ pointing at it, for as long as the block runs."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update({**S3_ENV, "AWS_ENDPOINT_URL": endpoint})
    try:
        boto3.client("s3", endpoint_url=endpoint, region_name=S3_ENV["AWS_DEFAULT_REGION"]).create_bucket(Bucket=bucket)
        yield endpoint
    finally:
        server.stop()
