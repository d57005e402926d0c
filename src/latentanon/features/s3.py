"""S3 storage (AWS or any S3-compatible server such as MinIO) for the feature store, via boto3.

The endpoint comes from AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (unset: AWS itself) and the
credentials from boto3's standard chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile, ...),
except under a scoped store (``scoped_credentials``): least privilege gives the feature store and
the release store identities of their own, and one process may hold both.
The client uses short timeouts and few retries, so a wrong endpoint fails fast with a clear error.
"""

from __future__ import annotations

import os

from latentanon.errors import StoreError
from latentanon.features.storage import ObjectNotFound, StorageBackend

ACCESS_DENIED_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "Forbidden",
        "403",
        "InvalidToken",
        "ExpiredToken",
        "InvalidClientTokenId",
    }
)
NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """("bucket", "prefix/without/slashes") of an s3://bucket/prefix uri."""
    if not uri.startswith("s3://"):
        raise StoreError(f"{uri}: not an s3:// uri")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket:
        raise StoreError(f"{uri}: no bucket name (expected s3://bucket/prefix)")
    return bucket, prefix.strip("/")


def s3_endpoint() -> str | None:
    """The S3 endpoint from the environment; None means AWS's own endpoints."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


# Store scopes with an identity of their own: LATENTANON_S3_<SCOPE>_URI names the store (set by the
# code that knows the layout, e.g. the Kubeflow workspace), LATENTANON_S3_<SCOPE>_ACCESS_KEY_ID and
# _SECRET_ACCESS_KEY its key (from that scope's Secret). Environment, not module state, so that
# worker processes inherit it.
CREDENTIAL_SCOPES = ("FEATURES", "RELEASE")


def scope_variable(scope: str, field: str) -> str:
    return f"LATENTANON_S3_{scope}_{field}"


def _within(prefix: str, scope_prefix: str) -> bool:
    return not scope_prefix or prefix == scope_prefix or prefix.startswith(f"{scope_prefix}/")


def scoped_credentials(uri: str) -> tuple[str, str] | None:
    """(access key, secret key) of the narrowest scope holding ``uri``; None: boto3's own chain."""
    bucket, prefix = parse_s3_uri(uri)
    chosen: tuple[int, tuple[str, str]] | None = None
    for scope in CREDENTIAL_SCOPES:
        scope_uri = os.environ.get(scope_variable(scope, "URI"), "")
        access_key = os.environ.get(scope_variable(scope, "ACCESS_KEY_ID"), "")
        secret_key = os.environ.get(scope_variable(scope, "SECRET_ACCESS_KEY"), "")
        if not (scope_uri.startswith("s3://") and access_key and secret_key):
            continue
        scope_bucket, scope_prefix = parse_s3_uri(scope_uri)
        narrower = chosen is None or len(scope_prefix) > chosen[0]
        if bucket == scope_bucket and _within(prefix, scope_prefix) and narrower:
            chosen = (len(scope_prefix), (access_key, secret_key))
    return chosen[1] if chosen else None


def make_s3_client(uri: str = ""):
    """A boto3 S3 client for the environment's endpoint and credentials, failing fast.

    With ``uri`` under a scoped store, the client signs with that store's own key."""
    import boto3
    from botocore.config import Config

    endpoint = s3_endpoint()
    config = Config(
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
        # Custom endpoints (MinIO, moto) rarely resolve bucket subdomains.
        s3={"addressing_style": "path" if endpoint else "auto"},
        # Checksums only where S3 requires them: some S3-compatible servers reject the newer
        # default ones, and every file carries its own sha256 in the store anyway.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    keys = scoped_credentials(uri) if uri else None
    if keys:
        return boto3.session.Session().client(
            "s3", endpoint_url=endpoint, config=config, aws_access_key_id=keys[0], aws_secret_access_key=keys[1]
        )
    return boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)


def describe_s3_error(exc: Exception, uri: str, action: str) -> StoreError:
    """A StoreError naming the uri and saying what to fix, for any boto3/botocore failure."""
    from botocore.exceptions import (
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
        ReadTimeoutError,
    )

    endpoint = s3_endpoint() or "AWS"
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return StoreError(
            f"{uri}: cannot {action}: no S3 credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        )
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError)):
        return StoreError(f"{uri}: cannot {action}: S3 endpoint {endpoint} not reachable ({exc})")
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ACCESS_DENIED_CODES or status == 403:
            return StoreError(
                f"{uri}: cannot {action}: access denied by {endpoint} ({code or status}); check "
                "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the bucket policy"
            )
        if code == "NoSuchBucket":
            return StoreError(f"{uri}: cannot {action}: bucket does not exist on {endpoint}")
        return StoreError(f"{uri}: cannot {action}: S3 error {code or status}: {exc}")
    return StoreError(f"{uri}: cannot {action}: {exc}")


class S3Backend(StorageBackend):
    """Files under s3://bucket/prefix. The bucket is checked once, on first use."""

    def __init__(self, uri: str, client=None) -> None:
        self.bucket, self.prefix = parse_s3_uri(uri)
        self.uri = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        self._client = client
        self._bucket_checked = False

    def _key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    @property
    def client(self):
        if self._client is None:
            self._client = make_s3_client(self.uri)
        if not self._bucket_checked:
            self._check_bucket(self._client)
        return self._client

    def _check_bucket(self, client) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            # A listing under the store's own prefix, not HeadBucket: an identity whose ListBucket
            # is limited to its prefix (the least-privilege policies) may make it.
            client.list_objects_v2(Bucket=self.bucket, Prefix=f"{self.prefix}/" if self.prefix else "", MaxKeys=1)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in {"404", "NoSuchBucket", "NotFound"}:
                raise StoreError(
                    f"{self.uri}: bucket {self.bucket!r} does not exist on {s3_endpoint() or 'AWS'} (NoSuchBucket)"
                ) from exc
            raise describe_s3_error(exc, self.uri, "open the bucket") from exc
        except BotoCoreError as exc:
            raise describe_s3_error(exc, self.uri, "open the bucket") from exc
        self._bucket_checked = True

    def _call(self, action: str, rel: str, method: str, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        client = self.client
        try:
            return getattr(client, method)(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in NOT_FOUND_CODES:
                raise ObjectNotFound(f"{self.location(rel)}: object not found") from exc
            raise describe_s3_error(exc, self.location(rel), action) from exc
        except BotoCoreError as exc:
            raise describe_s3_error(exc, self.location(rel), action) from exc

    def root_exists(self) -> bool:
        listing = self._call(
            "list objects", "", "list_objects_v2", Prefix=f"{self.prefix}/" if self.prefix else "", MaxKeys=1
        )
        return bool(listing.get("KeyCount", 0))

    def read_bytes(self, rel: str) -> bytes:
        response = self._call("read", rel, "get_object", Key=self._key(rel))
        return response["Body"].read()

    def write_bytes(self, rel: str, data: bytes) -> None:
        self._call("write", rel, "put_object", Key=self._key(rel), Body=data)

    def exists(self, rel: str) -> bool:
        try:
            self._call("check", rel, "head_object", Key=self._key(rel))
        except ObjectNotFound:
            return False
        return True

    def delete(self, rel: str) -> None:
        self._call("delete", rel, "delete_object", Key=self._key(rel))

    def list_files(self, under: str = "") -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        root = f"{self.prefix}/" if self.prefix else ""
        start = f"{root}{under.strip('/')}/" if under else root
        found: list[str] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start):
                found.extend(item["Key"][len(root) :] for item in page.get("Contents", []))
        except (ClientError, BotoCoreError) as exc:
            raise describe_s3_error(exc, self.location(under), "list objects") from exc
        return sorted(found)
