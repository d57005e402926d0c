"""The feature store on S3, against a moto S3 server on 127.0.0.1 with IAM authentication on."""

from __future__ import annotations

import json
import socket
import urllib.request

import boto3
import numpy as np
import pandas as pd
import pytest
from moto.server import ThreadedMotoServer

from latentanon.errors import StoreError
from latentanon.features.backends import copy_tree
from latentanon.features.featureset import FeatureSet
from latentanon.features.store import FeatureStore, list_feature_sets, load_feature_set, write_feature_set

BUCKET = "latentanon-test"


def _moto_api(endpoint: str, action: str, body: str) -> None:
    # A form content type would hide the body from moto's handler, hence octet-stream.
    request = urllib.request.Request(
        f"{endpoint}/moto-api/{action}",
        data=body.encode(),
        method="POST",
        headers={"Content-Type": "application/octet-stream"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


@pytest.fixture()
def s3_server(monkeypatch):
    """A moto server on a free loopback port; yields its endpoint and an authorised IAM key pair.

    Authentication is switched on after the set-up calls, so unknown keys and wrong secrets are
    refused the way real S3 (or MinIO) refuses them.
    """
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    try:
        iam = boto3.session.Session().client("iam", endpoint_url=endpoint)
        iam.create_user(UserName="pipeline")
        iam.put_user_policy(
            UserName="pipeline",
            PolicyName="store",
            PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
            ),
        )
        key = iam.create_access_key(UserName="pipeline")["AccessKey"]
        boto3.session.Session().client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        _moto_api(endpoint, "reset-auth", "0")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        yield {"endpoint": endpoint, "key_id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
    finally:
        _moto_api(endpoint, "reset-auth", "inf")
        _moto_api(endpoint, "reset", "")
        server.stop()


def fresh_s3_client():
    """A client that reads the credentials now (boto3's default session keeps the first ones)."""
    return boto3.session.Session().client("s3")


def small_set(n: int = 5) -> FeatureSet:
    rng = np.random.default_rng(1)
    records = pd.DataFrame(
        {
            "video_id": [f"v{i}" for i in range(n)],
            "split": ["train", "train", "val", "test", "test"][:n],
            "skin_tone": np.arange(n) % 3,
            "segments": [[[0.0, 2.0, "fall"]] if i % 2 else [] for i in range(n)],
        }
    )
    arrays = {
        "snippets": [rng.normal(size=(1 + i, 8)).astype(np.float32) for i in range(n)],
        "static": [rng.normal(size=(2, 8)).astype(np.float32) for _ in range(n)],
    }
    return FeatureSet(name="anomaly", records=records, arrays=arrays, meta={"manifest_hash": "m"})


def test_push_and_pull_feature_set(s3_server):
    fs = small_set()
    uri = f"s3://{BUCKET}/runs/features"
    index = write_feature_set(uri, fs, videos_per_shard=2)
    assert index["sets"]["anomaly"]["shards"] == [0, 1, 2]
    keys = {
        item["Key"] for item in fresh_s3_client().list_objects_v2(Bucket=BUCKET, Prefix="runs/features/")["Contents"]
    }
    assert "runs/features/index.json" in keys
    assert "runs/features/anomaly/shard-00002.checksums.json" in keys
    assert list_feature_sets(uri) == ["anomaly"]
    assert FeatureStore(uri).has_shard("anomaly", 2) and not FeatureStore(uri).has_shard("anomaly", 3)
    back = load_feature_set(uri + "/", "anomaly")
    pd.testing.assert_frame_equal(back.records, fs.records)
    for kind in fs.arrays:
        for a, b in zip(fs.arrays[kind], back.arrays[kind]):
            np.testing.assert_array_equal(a, b)
    assert back.meta == {"manifest_hash": "m"}


def test_corrupt_object_is_detected(s3_server):
    uri = f"s3://{BUCKET}/features"
    write_feature_set(uri, small_set(), videos_per_shard=5)
    s3 = fresh_s3_client()
    key = "features/anomaly/shard-00000.safetensors"
    data = bytearray(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    data[-1] ^= 0x01
    s3.put_object(Bucket=BUCKET, Key=key, Body=bytes(data))
    with pytest.raises(StoreError, match=rf"s3://{BUCKET}/{key}: checksum mismatch in shard 0"):
        load_feature_set(uri, "anomaly")


@pytest.mark.parametrize("wrong", ["key_id", "secret"])
def test_wrong_credentials_give_a_clear_error(s3_server, monkeypatch, wrong):
    uri = f"s3://{BUCKET}/features"
    if wrong == "key_id":
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNKEY000000")
    else:
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(StoreError, match=rf"{uri}: cannot open the bucket: access denied") as caught:
        write_feature_set(uri, small_set())
    assert "AWS_ACCESS_KEY_ID" in str(caught.value)
    with pytest.raises(StoreError, match="access denied"):
        load_feature_set(uri, "anomaly")


def test_missing_bucket_and_missing_store(s3_server):
    uri = "s3://no-such-bucket/features"
    with pytest.raises(StoreError, match=r"s3://no-such-bucket/features: bucket 'no-such-bucket' does not exist"):
        write_feature_set(uri, small_set())
    with pytest.raises(StoreError, match="NoSuchBucket"):
        list_feature_sets(uri)
    with pytest.raises(StoreError, match=rf"s3://{BUCKET}/empty: no feature store here"):
        load_feature_set(f"s3://{BUCKET}/empty", "anomaly")


def test_unreachable_endpoint_fails_fast(monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(StoreError, match=rf"s3://{BUCKET}/x: cannot open the bucket: S3 endpoint .* not reachable"):
        list_feature_sets(f"s3://{BUCKET}/x")


def test_copy_tree_moves_a_model_folder_up_and_back(s3_server, tmp_path):
    model = tmp_path / "models" / "method"
    (model / "heads").mkdir(parents=True)
    (model / "adapter.safetensors").write_bytes(bytes(range(256)) * 10)
    (model / "heads" / "ar.json").write_text('{"classes": 4}')
    assert copy_tree(model, f"s3://{BUCKET}/models/method") == 2
    back = tmp_path / "back"
    assert copy_tree(f"s3://{BUCKET}/models/method", back) == 2
    assert (back / "adapter.safetensors").read_bytes() == (model / "adapter.safetensors").read_bytes()
    assert (back / "heads" / "ar.json").read_text() == '{"classes": 4}'
    with pytest.raises(StoreError, match=rf"s3://{BUCKET}/models/none: nothing to copy"):
        copy_tree(f"s3://{BUCKET}/models/none", back)


def test_missing_credentials_and_bad_uris(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    with pytest.raises(StoreError, match=rf"s3://{BUCKET}/f: cannot open the bucket: no S3 credentials found"):
        list_feature_sets(f"s3://{BUCKET}/f")
    with pytest.raises(StoreError, match="no bucket name"):
        FeatureStore("s3:///features")


def test_endpoint_variable_precedence(monkeypatch):
    from latentanon.features.s3 import parse_s3_uri, s3_endpoint

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://general:9000")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://s3-only:9000")
    assert s3_endpoint() == "http://s3-only:9000"
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    assert s3_endpoint() == "http://general:9000"
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    assert s3_endpoint() is None
    assert parse_s3_uri("s3://bucket/a/b/") == ("bucket", "a/b")
    assert FeatureStore("s3://bucket/a/b/").uri == "s3://bucket/a/b"


def _user_limited_to(endpoint: str, name: str, prefix: str) -> dict:
    """An IAM user that may list the bucket and read, write and delete objects under ``prefix/`` only."""
    iam = boto3.session.Session().client("iam", endpoint_url=endpoint)
    iam.create_user(UserName=name)
    statements = [
        {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [f"arn:aws:s3:::{BUCKET}"]},
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            "Resource": [f"arn:aws:s3:::{BUCKET}/{prefix}/*"],
        },
    ]
    iam.put_user_policy(
        UserName=name, PolicyName=prefix, PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements})
    )
    return iam.create_access_key(UserName=name)["AccessKey"]


def test_each_scoped_store_is_signed_with_its_own_key(s3_server, monkeypatch):
    """One process holding the feature store's key and the release store's: each store is written
    with its own, a URI outside both falls back to AWS_ACCESS_KEY_ID, and swapped keys are refused."""
    from latentanon.features.s3 import scope_variable, scoped_credentials

    _moto_api(s3_server["endpoint"], "reset-auth", "inf")  # the set-up calls below are unsigned
    keys = {
        "FEATURES": _user_limited_to(s3_server["endpoint"], "features-writer", "features"),
        "RELEASE": _user_limited_to(s3_server["endpoint"], "release-writer", "features-anon"),
    }
    _moto_api(s3_server["endpoint"], "reset-auth", "0")

    def hold(features_key: dict, release_key: dict) -> None:
        for scope, key in (("FEATURES", features_key), ("RELEASE", release_key)):
            monkeypatch.setenv(scope_variable(scope, "URI"), f"s3://{BUCKET}/{scope_prefix[scope]}")
            monkeypatch.setenv(scope_variable(scope, "ACCESS_KEY_ID"), key["AccessKeyId"])
            monkeypatch.setenv(scope_variable(scope, "SECRET_ACCESS_KEY"), key["SecretAccessKey"])

    scope_prefix = {"FEATURES": "features", "RELEASE": "features-anon"}
    hold(keys["FEATURES"], keys["RELEASE"])
    assert scoped_credentials(f"s3://{BUCKET}/features/anomaly")[0] == keys["FEATURES"]["AccessKeyId"]
    assert scoped_credentials(f"s3://{BUCKET}/features-anon")[0] == keys["RELEASE"]["AccessKeyId"]
    assert scoped_credentials(f"s3://{BUCKET}/featuresX") is None  # a prefix, not a string start
    assert scoped_credentials("s3://other-bucket/features") is None

    write_feature_set(f"s3://{BUCKET}/features", small_set())
    write_feature_set(f"s3://{BUCKET}/features-anon", small_set())
    assert list_feature_sets(f"s3://{BUCKET}/features") == ["anomaly"]
    write_feature_set(f"s3://{BUCKET}/elsewhere", small_set())  # the fixture's allow-all key

    hold(keys["RELEASE"], keys["FEATURES"])
    with pytest.raises(StoreError, match="access denied"):
        write_feature_set(f"s3://{BUCKET}/features", small_set())
    with pytest.raises(StoreError, match="access denied"):
        load_feature_set(f"s3://{BUCKET}/features-anon", "anomaly")
