"""Tests of the emulator harness and of every patch in patches.py, through boto3 over HTTPS.

Which emulator: the env file named by IMAGESTACK_EMULATOR_ENV if set; otherwise the session
fixture runs start.sh (idempotent: it starts the emulator only if it is not already running,
honouring IMAGESTACK_RUN_DIR / IMAGESTACK_EMULATOR_PORT) and reads the env file it prints. The
emulator is left running. test.sh runs these tests against a private instance (own run dir and
port) and stops it afterwards.

Every test uses fresh unique resource names, so the tests can share an emulator with other test
suites. The one test that calls POST /moto-api/reset (which wipes everything) runs only when
IMAGESTACK_EMULATOR_ALLOW_RESET=1 (test.sh sets it for its private instance).

Run: scripts/emulator/test.sh   or   .venv/bin/python -m pytest scripts/emulator/test_patches.py
"""

from __future__ import annotations

import io
import json
import os
import shlex
import ssl
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import time
import uuid
import zipfile
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import patches  # noqa: E402  (pure policy-evaluation helpers, tested directly below)

ACCOUNT = "123456789012"
DIST_ARN = f"arn:aws:cloudfront::{ACCOUNT}:distribution/EDFDVBD6EXAMPLE"
CACHING_OPTIMIZED = "658327ea-f89d-4fab-a63d-7e88639e58f6"  # AWS managed cache policy id


# ------------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------------


def _read_env_file(path: str) -> dict[str, str]:
    env = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    return env


@pytest.fixture(scope="session")
def emu_env() -> dict[str, str]:
    path = os.environ.get("IMAGESTACK_EMULATOR_ENV")
    if not path:
        out = subprocess.run([str(HERE / "start.sh")], check=True, stdout=subprocess.PIPE, text=True)
        path = out.stdout.strip().splitlines()[-1]
    env = _read_env_file(path)
    for key in ("AWS_ENDPOINT_URL", "SSL_CERT_FILE", "AWS_CA_BUNDLE", "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_DEFAULT_REGION"):
        assert env.get(key), f"{key} missing from {path}"
    return env


@pytest.fixture(scope="session")
def client(emu_env):
    session = boto3.Session(
        aws_access_key_id=emu_env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=emu_env["AWS_SECRET_ACCESS_KEY"],
        region_name=emu_env["AWS_REGION"],
    )
    config = Config(retries={"max_attempts": 1, "mode": "standard"}, s3={"addressing_style": "path"})

    def make(service: str):
        return session.client(service, endpoint_url=emu_env["AWS_ENDPOINT_URL"],
                              verify=emu_env["AWS_CA_BUNDLE"], config=config)

    return make


@pytest.fixture(scope="session")
def s3(client):
    return client("s3")


@pytest.fixture(scope="session")
def cloudfront(client):
    return client("cloudfront")


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def error_of(exc_info) -> tuple[str, int]:
    err = exc_info.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def tls_only_statement(bucket: str) -> dict:
    return {
        "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def cloudfront_read_statement(bucket: str) -> dict:
    return {
        "Sid": "AllowCloudFrontServicePrincipalReadOnly", "Effect": "Allow",
        "Principal": {"Service": "cloudfront.amazonaws.com"}, "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/webp/*",
        "Condition": {"StringEquals": {"AWS:SourceArn": DIST_ARN}},
    }


def put_policy(s3, bucket: str, *statements: dict) -> None:
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": list(statements)}))


@pytest.fixture
def bucket(s3):
    name = uid("emu-test")
    s3.create_bucket(Bucket=name)
    return name


# ------------------------------------------------------------------------------------------------
# harness
# ------------------------------------------------------------------------------------------------


def test_env_file_points_at_https_loopback_with_our_ca(emu_env):
    url = urllib.parse.urlparse(emu_env["AWS_ENDPOINT_URL"])
    assert url.scheme == "https" and url.hostname == "127.0.0.1"
    assert emu_env["SSL_CERT_FILE"] == emu_env["AWS_CA_BUNDLE"]
    assert emu_env["AWS_REGION"] == emu_env["AWS_DEFAULT_REGION"] == "us-east-1"
    # The certificate is valid for both 127.0.0.1 and localhost (SAN) under the bundle ...
    ctx = ssl.create_default_context(cafile=emu_env["AWS_CA_BUNDLE"])
    for host in ("127.0.0.1", "localhost"):
        with urllib.request.urlopen(f"https://{host}:{url.port}/moto-api/config", context=ctx) as r:
            assert 200 <= r.status < 300
    # ... and the bundle still carries the system CAs (when the system has a bundle).
    system = Path("/etc/ssl/certs/ca-certificates.crt")
    if system.exists():
        assert Path(emu_env["AWS_CA_BUNDLE"]).read_text().count("BEGIN CERTIFICATE") > 1


def test_start_sh_is_idempotent_and_prints_the_same_env_file(emu_env):
    if os.environ.get("IMAGESTACK_EMULATOR_ENV"):
        pytest.skip("emulator given by IMAGESTACK_EMULATOR_ENV; start.sh not used")
    out = subprocess.run([str(HERE / "start.sh")], check=True, stdout=subprocess.PIPE, text=True)
    assert _read_env_file(out.stdout.strip())["AWS_ENDPOINT_URL"] == emu_env["AWS_ENDPOINT_URL"]


def test_sts_get_caller_identity(client):
    assert client("sts").get_caller_identity()["Account"] == ACCOUNT


@pytest.mark.skipif(os.environ.get("IMAGESTACK_EMULATOR_ALLOW_RESET") != "1",
                    reason="wipes the shared emulator; set IMAGESTACK_EMULATOR_ALLOW_RESET=1 (test.sh does)")
def test_moto_api_reset_still_works(emu_env, s3, bucket):
    ctx = ssl.create_default_context(cafile=emu_env["AWS_CA_BUNDLE"])
    req = urllib.request.Request(emu_env["AWS_ENDPOINT_URL"] + "/moto-api/reset", method="POST")
    with urllib.request.urlopen(req, context=ctx) as r:
        assert 200 <= r.status < 300
    assert bucket not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]
    # patches survive a reset
    b = uid("emu-after-reset")
    s3.create_bucket(Bucket=b)
    put_policy(s3, b, tls_only_statement(b))
    s3.put_object(Bucket=b, Key="k", Body=b"x")


# ------------------------------------------------------------------------------------------------
# patch: s3-bucket-policy-conditions
# ------------------------------------------------------------------------------------------------


def test_tls_only_policy_does_not_block_normal_object_requests(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    put_policy(s3, bucket, tls_only_statement(bucket))
    s3.put_object(Bucket=bucket, Key="uploads/a.jpg", Body=b"one")
    s3.put_object(Bucket=bucket, Key="uploads/a.jpg", Body=b"two")
    assert s3.get_object(Bucket=bucket, Key="uploads/a.jpg")["Body"].read() == b"two"
    assert s3.head_object(Bucket=bucket, Key="uploads/a.jpg")["ContentLength"] == 3
    s3.copy_object(Bucket=bucket, Key="webp/a.webp", CopySource={"Bucket": bucket, "Key": "uploads/a.jpg"})
    mpu = s3.create_multipart_upload(Bucket=bucket, Key="big.bin")
    part = s3.upload_part(Bucket=bucket, Key="big.bin", UploadId=mpu["UploadId"], PartNumber=1, Body=b"p" * 10)
    s3.complete_multipart_upload(Bucket=bucket, Key="big.bin", UploadId=mpu["UploadId"],
                                 MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]})
    s3.delete_object(Bucket=bucket, Key="uploads/a.jpg")  # -> delete marker
    listing = s3.list_object_versions(Bucket=bucket)
    everything = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                  for v in listing.get("Versions", []) + listing.get("DeleteMarkers", [])]
    assert len(everything) == 5  # 2 versions + 1 delete marker of a.jpg, webp/a.webp, big.bin
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": everything})
    assert not result.get("Errors") and len(result["Deleted"]) == 5
    s3.delete_bucket(Bucket=bucket)


def test_deny_whose_condition_holds_still_denies(s3, bucket):
    s3.put_object(Bucket=bucket, Key="webp/x.webp", Body=b"x")
    deny_get_over_tls = {
        "Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*",
        "Condition": {"Bool": {"aws:SecureTransport": "true"}},
    }
    put_policy(s3, bucket, tls_only_statement(bucket), deny_get_over_tls)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="webp/x.webp")
    assert error_of(e) == ("AccessDenied", 403)
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="webp/x.webp")  # HeadObject is authorised as s3:GetObject
    assert error_of(e)[1] == 403
    s3.put_object(Bucket=bucket, Key="webp/y.webp", Body=b"y")  # not denied: other action


def test_string_equals_deny_matches_only_when_value_matches(s3, bucket):
    def deny_put_for_account(account: str) -> dict:
        return {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": ["s3:PutObject", "s3:DeleteObject"],
                "Resource": f"arn:aws:s3:::{bucket}/*",
                "Condition": {"StringEquals": {"AWS:PrincipalAccount": account}}}

    put_policy(s3, bucket, deny_put_for_account("999999999999"))
    s3.put_object(Bucket=bucket, Key="a", Body=b"a")  # condition does not hold: allowed
    put_policy(s3, bucket, deny_put_for_account(ACCOUNT))
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="b", Body=b"b")
    assert error_of(e) == ("AccessDenied", 403)
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a"}]})
    assert [x["Code"] for x in result["Errors"]] == ["AccessDenied"]
    assert s3.get_object(Bucket=bucket, Key="a")["Body"].read() == b"a"


def test_cloudfront_sourcearn_allow_is_not_a_deny_for_the_bucket_owner(s3, emu_env, bucket):
    put_policy(s3, bucket, tls_only_statement(bucket), cloudfront_read_statement(bucket))
    s3.put_object(Bucket=bucket, Key="webp/a.webp", Body=b"webp")
    s3.put_object(Bucket=bucket, Key="jpeg/a.jpg", Body=b"jpeg")
    assert s3.get_object(Bucket=bucket, Key="webp/a.webp")["Body"].read() == b"webp"
    assert s3.get_object(Bucket=bucket, Key="jpeg/a.jpg")["Body"].read() == b"jpeg"
    # The grant is for the CloudFront service principal only: an anonymous GET is still refused.
    ctx = ssl.create_default_context(cafile=emu_env["AWS_CA_BUNDLE"])
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{emu_env['AWS_ENDPOINT_URL']}/{bucket}/webp/a.webp", context=ctx)
    assert e.value.code == 403


def test_public_read_allow_grants_anonymous_reads(s3, emu_env, bucket):
    put_policy(s3, bucket, tls_only_statement(bucket), {
        "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/public/*"})
    s3.put_object(Bucket=bucket, Key="public/p.txt", Body=b"p")
    ctx = ssl.create_default_context(cafile=emu_env["AWS_CA_BUNDLE"])
    with urllib.request.urlopen(f"{emu_env['AWS_ENDPOINT_URL']}/{bucket}/public/p.txt", context=ctx) as r:
        assert r.read() == b"p"


@pytest.mark.parametrize("condition, context, holds", [
    ({"Bool": {"aws:SecureTransport": "false"}}, {"aws:securetransport": ["true"]}, False),
    ({"Bool": {"aws:SecureTransport": False}}, {"aws:securetransport": ["false"]}, True),
    ({"StringEquals": {"AWS:SourceArn": DIST_ARN}}, {}, False),  # key absent
    ({"StringEquals": {"aws:sourcearn": DIST_ARN}}, {"aws:sourcearn": [DIST_ARN]}, True),  # keys case-insensitive
    ({"StringEquals": {"aws:SourceArn": DIST_ARN.upper()}}, {"aws:sourcearn": [DIST_ARN]}, False),  # values are not
    ({"StringNotEquals": {"aws:SourceAccount": ACCOUNT}}, {}, True),  # negated + absent key -> true
    ({"StringLike": {"s3:prefix": ["webp/*", "jpeg/?.jpg"]}}, {"s3:prefix": ["jpeg/a.jpg"]}, True),
    ({"StringLike": {"s3:prefix": "webp/*"}}, {"s3:prefix": ["png/a"]}, False),
    ({"ArnLike": {"AWS:SourceArn": "arn:aws:cloudfront::*:distribution/*"}}, {"aws:sourcearn": [DIST_ARN]}, True),
    ({"ArnLike": {"aws:SourceArn": "arn:aws:s3:::bucket-*"}}, {"aws:sourcearn": ["arn:aws:s3:::bucket-x"]}, True),
    ({"ArnEquals": {"aws:SourceArn": "arn:aws:s3:::other"}}, {"aws:sourcearn": ["arn:aws:s3:::bucket-x"]}, False),
    ({"ArnLike": {"aws:SourceArn": "arn:aws:s3:::*"}}, {"aws:sourcearn": ["arn:aws:s3::extra:x:y"]}, False),
    ({"Null": {"aws:SourceArn": "true"}}, {}, True),
    ({"Null": {"aws:SourceArn": "false"}}, {}, False),
    ({"StringEqualsIfExists": {"aws:SourceArn": DIST_ARN}}, {}, True),
    ({"ForAllValues:StringEquals": {"aws:TagKeys": ["a", "b"]}}, {"aws:tagkeys": ["a"]}, True),
    ({"ForAnyValue:StringEquals": {"aws:TagKeys": ["c"]}}, {"aws:tagkeys": ["a", "b"]}, False),
    ({"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}, {"aws:sourceip": ["127.0.0.1"]}, True),
    ({"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {"aws:sourceip": ["127.0.0.1"]}, True),
    ({"NumericLessThan": {"s3:max-keys": "10"}}, {"s3:max-keys": ["5"]}, True),
    # several operators and keys: all must hold
    ({"Bool": {"aws:SecureTransport": "true"}, "StringEquals": {"aws:SourceAccount": ACCOUNT}},
     {"aws:securetransport": ["true"]}, False),
])
def test_condition_operators(condition, context, holds):
    assert patches.condition_holds(condition, context) is holds


def test_unsupported_condition_operator_fails_loudly():
    with pytest.raises(NotImplementedError):
        patches.condition_holds({"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}, {"aws:currenttime": ["x"]})


def test_policy_evaluation_principal_action_resource():
    policy = {"Statement": [
        tls_only_statement("b"), cloudfront_read_statement("b"),
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "NotAction": "s3:Delete*",
         "Resource": "arn:aws:s3:::b/*"},
    ]}
    tls = {"aws:securetransport": ["true"]}
    ev = patches.evaluate_policy
    assert ev(policy, "s3:GetObject", "arn:aws:s3:::b/webp/x", ACCOUNT, tls) == "Allow"
    assert ev(policy, "s3:DeleteObject", "arn:aws:s3:::b/webp/x", ACCOUNT, tls) == "Neutral"
    assert ev(policy, "s3:GetObject", "arn:aws:s3:::b/webp/x", None, tls) == "Neutral"  # anonymous
    assert ev(policy, "s3:GetObject", "arn:aws:s3:::b/webp/x", ACCOUNT, {"aws:securetransport": ["false"]}) == "Deny"
    cf_ctx = dict(tls, **{"aws:sourcearn": [DIST_ARN]})
    assert ev({"Statement": [cloudfront_read_statement("b")]}, "s3:GetObject", "arn:aws:s3:::b/webp/x", ACCOUNT, cf_ctx) == "Neutral"


# ------------------------------------------------------------------------------------------------
# patch: s3-notification-destination-validation
# ------------------------------------------------------------------------------------------------


def _function(client, name: str) -> str:
    iam, lam = client("iam"), client("lambda")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                     "Action": "sts:AssumeRole"}]}
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\n")
    return lam.create_function(FunctionName=name, Runtime="provided.al2023", Role=role, Handler="bootstrap",
                               Code={"ZipFile": buf.getvalue()})["FunctionArn"]


def test_notification_needs_lambda_permission_for_the_bucket(client, s3, bucket):
    lam = client("lambda")
    fn = _function(client, uid("emu-fn"))
    config = {"LambdaFunctionConfigurations": [{"Id": "on-upload", "LambdaFunctionArn": fn, "Events": ["s3:ObjectCreated:*"],
                                                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "uploads/"}]}}}]}
    with pytest.raises(ClientError) as e:  # no permission yet
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)
    assert error_of(e) == ("InvalidArgument", 400)
    lam.add_permission(FunctionName=fn, StatementId="other-bucket", Action="lambda:InvokeFunction",
                       Principal="s3.amazonaws.com", SourceArn="arn:aws:s3:::some-other-bucket", SourceAccount=ACCOUNT)
    with pytest.raises(ClientError) as e:  # permission for another bucket only
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)
    assert error_of(e) == ("InvalidArgument", 400)
    lam.add_permission(FunctionName=fn, StatementId="s3-invoke", Action="lambda:InvokeFunction",
                       Principal="s3.amazonaws.com", SourceArn=f"arn:aws:s3:::{bucket}", SourceAccount=ACCOUNT)
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)
    got = s3.get_bucket_notification_configuration(Bucket=bucket)["LambdaFunctionConfigurations"]
    assert [(c["Id"], c["LambdaFunctionArn"]) for c in got] == [("on-upload", fn)]
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})  # removing is always fine


# ------------------------------------------------------------------------------------------------
# patches: cloudfront-*
# ------------------------------------------------------------------------------------------------


def _oac(cloudfront) -> str:
    return cloudfront.create_origin_access_control(OriginAccessControlConfig={
        "Name": uid("emu-oac"), "Description": "test", "SigningProtocol": "sigv4", "SigningBehavior": "always",
        "OriginAccessControlOriginType": "s3"})["OriginAccessControl"]["Id"]


def _distribution_config(oac_id: str, enabled: bool = True) -> dict:
    def origin(name: str) -> dict:
        return {"Id": name, "DomainName": f"{uid('emu-' + name)}.s3.us-east-1.amazonaws.com", "OriginPath": "",
                "S3OriginConfig": {"OriginAccessIdentity": ""}, "OriginAccessControlId": oac_id}

    def behaviour(origin_id: str) -> dict:
        return {"TargetOriginId": origin_id, "ViewerProtocolPolicy": "redirect-to-https", "Compress": True,
                "CachePolicyId": CACHING_OPTIMIZED,
                "AllowedMethods": {"Quantity": 2, "Items": ["GET", "HEAD"],
                                   "CachedMethods": {"Quantity": 2, "Items": ["GET", "HEAD"]}}}

    return {
        "CallerReference": uid("emu-ref"), "Comment": "emulator test", "Enabled": enabled, "PriceClass": "PriceClass_100",
        "Origins": {"Quantity": 2, "Items": [origin("webp"), origin("jpeg")]},
        "DefaultCacheBehavior": behaviour("webp"),
        "CacheBehaviors": {"Quantity": 2, "Items": [dict(behaviour("webp"), PathPattern="/webp/*"),
                                                    dict(behaviour("jpeg"), PathPattern="/jpeg/*")]},
    }


def test_origins_round_trip_oac_and_s3_origin_config(cloudfront):
    oac_id = _oac(cloudfront)
    sent = _distribution_config(oac_id)
    created = cloudfront.create_distribution(DistributionConfig=sent)["Distribution"]
    for got in (cloudfront.get_distribution(Id=created["Id"])["Distribution"]["DistributionConfig"],
                cloudfront.get_distribution_config(Id=created["Id"])["DistributionConfig"]):
        for sent_origin, got_origin in zip(sent["Origins"]["Items"], got["Origins"]["Items"]):
            assert got_origin["OriginAccessControlId"] == oac_id
            assert got_origin["S3OriginConfig"] == {"OriginAccessIdentity": ""}
            assert got_origin["DomainName"] == sent_origin["DomainName"]
        # cache-policy behaviours come back without legacy ForwardedValues/TTLs or an empty policy id
        for b in [got["DefaultCacheBehavior"]] + got["CacheBehaviors"]["Items"]:
            assert b["CachePolicyId"] == CACHING_OPTIMIZED
            for absent in ("ForwardedValues", "MinTTL", "DefaultTTL", "MaxTTL", "OriginRequestPolicyId"):
                assert absent not in b, absent


def test_origin_without_oac_reads_back_empty_oac_id(cloudfront):
    config = _distribution_config("")
    for o in config["Origins"]["Items"]:
        del o["OriginAccessControlId"]
    dist = cloudfront.create_distribution(DistributionConfig=config)["Distribution"]
    got = cloudfront.get_distribution_config(Id=dist["Id"])["DistributionConfig"]
    assert [o["OriginAccessControlId"] for o in got["Origins"]["Items"]] == ["", ""]


def test_update_rotates_etag_and_enforces_if_match(cloudfront):
    created = cloudfront.create_distribution(DistributionConfig=_distribution_config(_oac(cloudfront)))
    dist_id, etag0 = created["Distribution"]["Id"], created["ETag"]
    current = cloudfront.get_distribution_config(Id=dist_id)
    assert current["ETag"] == etag0
    config = dict(current["DistributionConfig"], Comment="changed")
    with pytest.raises(ClientError) as e:
        cloudfront.update_distribution(Id=dist_id, DistributionConfig=config, IfMatch="E2STALEETAG")
    assert error_of(e) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as e:
        cloudfront.update_distribution(Id=dist_id, DistributionConfig=config, IfMatch="")
    assert error_of(e) == ("InvalidIfMatchVersion", 400)
    etag1 = cloudfront.update_distribution(Id=dist_id, DistributionConfig=config, IfMatch=etag0)["ETag"]
    assert etag1 != etag0
    after = cloudfront.get_distribution_config(Id=dist_id)
    assert after["ETag"] == etag1 and after["DistributionConfig"]["Comment"] == "changed"
    with pytest.raises(ClientError) as e:  # the old ETag is stale now
        cloudfront.update_distribution(Id=dist_id, DistributionConfig=config, IfMatch=etag0)
    assert error_of(e) == ("PreconditionFailed", 412)
    assert cloudfront.update_distribution(Id=dist_id, DistributionConfig=config, IfMatch=etag1)["ETag"] not in (etag0, etag1)


def test_enabled_distribution_cannot_be_deleted(cloudfront):
    created = cloudfront.create_distribution(DistributionConfig=_distribution_config(_oac(cloudfront)))
    dist_id, etag = created["Distribution"]["Id"], created["ETag"]
    with pytest.raises(ClientError) as e:
        cloudfront.delete_distribution(Id=dist_id, IfMatch=etag)
    assert error_of(e) == ("DistributionNotDisabled", 409)
    with pytest.raises(ClientError) as e:
        cloudfront.delete_distribution(Id=dist_id)
    assert error_of(e) == ("InvalidIfMatchVersion", 400)
    # disable -> (Deployed) -> delete with the new ETag
    config = dict(cloudfront.get_distribution_config(Id=dist_id)["DistributionConfig"], Enabled=False)
    etag = cloudfront.update_distribution(Id=dist_id, DistributionConfig=config, IfMatch=etag)["ETag"]
    assert cloudfront.get_distribution(Id=dist_id)["Distribution"]["Status"] == "Deployed"
    with pytest.raises(ClientError) as e:
        cloudfront.delete_distribution(Id=dist_id, IfMatch="E2STALEETAG")
    assert error_of(e) == ("PreconditionFailed", 412)
    cloudfront.delete_distribution(Id=dist_id, IfMatch=etag)
    with pytest.raises(ClientError) as e:
        cloudfront.get_distribution(Id=dist_id)
    assert error_of(e) == ("NoSuchDistribution", 404)


FUNCTION_CONFIG = {"Comment": "emulator test", "Runtime": "cloudfront-js-2.0"}


def _cf_function(cloudfront, code: bytes = b"function handler(event) { return event.request; }") -> tuple[str, str]:
    name = uid("emu-fn")
    created = cloudfront.create_function(Name=name, FunctionConfig=FUNCTION_CONFIG, FunctionCode=code)
    return name, created["ETag"]


def test_function_stages_update_publish_and_etags(cloudfront):
    name, etag0 = _cf_function(cloudfront, b"// v1")
    # never published: no LIVE stage
    with pytest.raises(ClientError) as e:
        cloudfront.describe_function(Name=name, Stage="LIVE")
    assert error_of(e) == ("NoSuchFunctionExists", 404)
    with pytest.raises(ClientError) as e:
        cloudfront.get_function(Name=name, Stage="LIVE")
    assert error_of(e) == ("NoSuchFunctionExists", 404)
    dev = cloudfront.describe_function(Name=name)
    assert dev["ETag"] == etag0 and dev["FunctionSummary"]["FunctionMetadata"]["Stage"] == "DEVELOPMENT"
    # update needs the current ETag, rotates it, and changes only DEVELOPMENT
    with pytest.raises(ClientError) as e:
        cloudfront.update_function(Name=name, IfMatch="E2STALEETAG", FunctionConfig=FUNCTION_CONFIG,
                                   FunctionCode=b"// v2")
    assert error_of(e) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as e:
        cloudfront.publish_function(Name=name, IfMatch="")
    assert error_of(e) == ("InvalidIfMatchVersion", 400)
    cloudfront.publish_function(Name=name, IfMatch=etag0)
    assert cloudfront.get_function(Name=name, Stage="LIVE")["FunctionCode"].read() == b"// v1"
    etag1 = cloudfront.update_function(Name=name, IfMatch=etag0, FunctionConfig=dict(FUNCTION_CONFIG, Comment="v2"),
                                       FunctionCode=b"// v2")["ETag"]
    assert etag1 and etag1 != etag0
    assert cloudfront.get_function(Name=name)["FunctionCode"].read() == b"// v2"
    live = cloudfront.describe_function(Name=name, Stage="LIVE")["FunctionSummary"]
    assert cloudfront.get_function(Name=name, Stage="LIVE")["FunctionCode"].read() == b"// v1"
    assert live["FunctionConfig"]["Comment"] == "emulator test" and live["FunctionMetadata"]["Stage"] == "LIVE"
    with pytest.raises(ClientError) as e:  # the old ETag is stale now
        cloudfront.publish_function(Name=name, IfMatch=etag0)
    assert error_of(e) == ("PreconditionFailed", 412)
    cloudfront.publish_function(Name=name, IfMatch=etag1)
    assert cloudfront.get_function(Name=name, Stage="LIVE")["FunctionCode"].read() == b"// v2"
    with pytest.raises(ClientError) as e:
        cloudfront.delete_function(Name=name, IfMatch=etag0)
    assert error_of(e) == ("PreconditionFailed", 412)
    cloudfront.delete_function(Name=name, IfMatch=etag1)
    with pytest.raises(ClientError) as e:
        cloudfront.describe_function(Name=name)
    assert error_of(e) == ("NoSuchFunctionExists", 404)


def test_function_associations_round_trip_validate_and_block_deletion(cloudfront):
    name, etag = _cf_function(cloudfront)
    arn = cloudfront.describe_function(Name=name)["FunctionSummary"]["FunctionMetadata"]["FunctionARN"]
    association = {"Quantity": 1, "Items": [{"FunctionARN": arn, "EventType": "viewer-request"}]}
    config = _distribution_config(_oac(cloudfront))
    config["CacheBehaviors"]["Items"][1]["FunctionAssociations"] = association
    # not published yet: AWS refuses the association
    with pytest.raises(ClientError) as e:
        cloudfront.create_distribution(DistributionConfig=config)
    assert error_of(e) == ("InvalidFunctionAssociation", 400)
    cloudfront.publish_function(Name=name, IfMatch=etag)
    created = cloudfront.create_distribution(DistributionConfig=config)
    dist_id = created["Distribution"]["Id"]
    got = cloudfront.get_distribution_config(Id=dist_id)
    behaviours = got["DistributionConfig"]["CacheBehaviors"]["Items"]
    assert behaviours[1]["FunctionAssociations"] == association
    assert behaviours[0]["FunctionAssociations"] == {"Quantity": 0}
    assert got["DistributionConfig"]["DefaultCacheBehavior"]["FunctionAssociations"] == {"Quantity": 0}
    # in use: cannot be deleted
    with pytest.raises(ClientError) as e:
        cloudfront.delete_function(Name=name, IfMatch=etag)
    assert error_of(e) == ("FunctionInUse", 409)
    # disassociate (update without it), then the delete goes through
    plain = got["DistributionConfig"]
    del plain["CacheBehaviors"]["Items"][1]["FunctionAssociations"]
    cloudfront.update_distribution(Id=dist_id, DistributionConfig=plain, IfMatch=got["ETag"])
    cloudfront.delete_function(Name=name, IfMatch=etag)


def test_origin_access_control_config_etag_and_lifecycle(cloudfront):
    config = {"Name": uid("emu-oac"), "Description": "d", "SigningProtocol": "sigv4", "SigningBehavior": "always",
              "OriginAccessControlOriginType": "s3"}
    created = cloudfront.create_origin_access_control(OriginAccessControlConfig=config)
    oac_id, etag = created["OriginAccessControl"]["Id"], created["ETag"]
    got = cloudfront.get_origin_access_control_config(Id=oac_id)
    assert got["OriginAccessControlConfig"] == config and got["ETag"] == etag
    assert cloudfront.get_origin_access_control(Id=oac_id)["ETag"] == etag
    with pytest.raises(ClientError) as e:
        cloudfront.create_origin_access_control(OriginAccessControlConfig=config)
    assert error_of(e) == ("OriginAccessControlAlreadyExists", 409)
    with pytest.raises(ClientError) as e:
        cloudfront.update_origin_access_control(Id=oac_id, OriginAccessControlConfig=dict(config, Description="x"), IfMatch="STALE")
    assert error_of(e) == ("PreconditionFailed", 412)
    etag2 = cloudfront.update_origin_access_control(Id=oac_id, OriginAccessControlConfig=dict(config, Description="x"),
                                                    IfMatch=etag)["ETag"]
    assert etag2 != etag
    assert cloudfront.get_origin_access_control_config(Id=oac_id)["ETag"] == etag2
    # in use by a distribution -> refused
    dist = cloudfront.create_distribution(DistributionConfig=_distribution_config(oac_id))
    with pytest.raises(ClientError) as e:
        cloudfront.delete_origin_access_control(Id=oac_id, IfMatch=etag2)
    assert error_of(e) == ("OriginAccessControlInUse", 409)
    config_off = dict(cloudfront.get_distribution_config(Id=dist["Distribution"]["Id"])["DistributionConfig"], Enabled=False)
    etag_d = cloudfront.update_distribution(Id=dist["Distribution"]["Id"], DistributionConfig=config_off, IfMatch=dist["ETag"])["ETag"]
    cloudfront.get_distribution(Id=dist["Distribution"]["Id"])
    cloudfront.delete_distribution(Id=dist["Distribution"]["Id"], IfMatch=etag_d)
    cloudfront.delete_origin_access_control(Id=oac_id, IfMatch=etag2)
    with pytest.raises(ClientError) as e:
        cloudfront.get_origin_access_control_config(Id=oac_id)
    assert error_of(e) == ("NoSuchOriginAccessControl", 404)
    with pytest.raises(ClientError) as e:
        cloudfront.delete_origin_access_control(Id=oac_id, IfMatch=etag2)
    assert error_of(e) == ("NoSuchOriginAccessControl", 404)


def _cache_policy_config(name: str, ttls: tuple[int, int, int] = (60, 3600, 86400)) -> dict:
    return {"Name": name, "Comment": "imagestack test", "MinTTL": ttls[0], "DefaultTTL": ttls[1], "MaxTTL": ttls[2],
            "ParametersInCacheKeyAndForwardedToOrigin": {
                "EnableAcceptEncodingGzip": True, "EnableAcceptEncodingBrotli": True,
                "HeadersConfig": {"HeaderBehavior": "none"}, "CookiesConfig": {"CookieBehavior": "none"},
                "QueryStringsConfig": {"QueryStringBehavior": "none"}}}


def test_cache_policy_api_etag_and_managed_caching_optimized(cloudfront):
    name = uid("emu-cp")
    config = _cache_policy_config(name)
    created = cloudfront.create_cache_policy(CachePolicyConfig=config)
    policy_id, etag = created["CachePolicy"]["Id"], created["ETag"]
    assert created["CachePolicy"]["CachePolicyConfig"] == config and etag
    got = cloudfront.get_cache_policy(Id=policy_id)
    assert got["CachePolicy"]["CachePolicyConfig"] == config and got["ETag"] == etag
    assert cloudfront.get_cache_policy_config(Id=policy_id) | {"ResponseMetadata": None} == \
        {"CachePolicyConfig": config, "ETag": etag, "ResponseMetadata": None}
    with pytest.raises(ClientError) as e:
        cloudfront.create_cache_policy(CachePolicyConfig=config)
    assert error_of(e) == ("CachePolicyAlreadyExists", 409)
    # Type filters: ours is custom, CachingOptimized is managed, both without a Type.
    def listed(**kw):
        items = cloudfront.list_cache_policies(**kw)["CachePolicyList"].get("Items", [])
        return {i["CachePolicy"]["Id"]: i["Type"] for i in items}
    assert listed(Type="custom").get(policy_id) == "custom" and CACHING_OPTIMIZED not in listed(Type="custom")
    assert listed(Type="managed") == {CACHING_OPTIMIZED: "managed"}
    assert {policy_id, CACHING_OPTIMIZED} <= set(listed())
    managed = cloudfront.get_cache_policy(Id=CACHING_OPTIMIZED)["CachePolicy"]["CachePolicyConfig"]
    assert managed["Name"] == "Managed-CachingOptimized"
    assert (managed["MinTTL"], managed["DefaultTTL"], managed["MaxTTL"]) == (1, 86400, 31536000)
    # Update: IfMatch enforced, new ETag.
    changed = _cache_policy_config(name, (0, 7200, 86400))
    with pytest.raises(ClientError) as e:
        cloudfront.update_cache_policy(Id=policy_id, CachePolicyConfig=changed, IfMatch="STALE")
    assert error_of(e) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as e:
        cloudfront.update_cache_policy(Id=policy_id, CachePolicyConfig=changed, IfMatch="")
    assert error_of(e) == ("InvalidIfMatchVersion", 400)
    etag2 = cloudfront.update_cache_policy(Id=policy_id, CachePolicyConfig=changed, IfMatch=etag)["ETag"]
    assert etag2 != etag
    got = cloudfront.get_cache_policy_config(Id=policy_id)
    assert got["ETag"] == etag2 and got["CachePolicyConfig"]["DefaultTTL"] == 7200
    with pytest.raises(ClientError) as e:
        cloudfront.delete_cache_policy(Id=policy_id, IfMatch=etag)
    assert error_of(e) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as e:
        cloudfront.delete_cache_policy(Id=CACHING_OPTIMIZED, IfMatch="x")
    assert error_of(e) == ("IllegalDelete", 400)
    cloudfront.delete_cache_policy(Id=policy_id, IfMatch=etag2)
    for call in (lambda: cloudfront.get_cache_policy(Id=policy_id),
                 lambda: cloudfront.delete_cache_policy(Id=policy_id, IfMatch=etag2)):
        with pytest.raises(ClientError) as e:
            call()
        assert error_of(e) == ("NoSuchCachePolicy", 404)


def test_behaviours_reference_existing_cache_policies_which_are_in_use(cloudfront):
    created = cloudfront.create_cache_policy(CachePolicyConfig=_cache_policy_config(uid("emu-cp")))
    policy_id, policy_etag = created["CachePolicy"]["Id"], created["ETag"]
    config = _distribution_config(_oac(cloudfront))
    config["CacheBehaviors"]["Items"][1]["CachePolicyId"] = "00000000-0000-0000-0000-000000000000"
    with pytest.raises(ClientError) as e:  # unknown policy
        cloudfront.create_distribution(DistributionConfig=config)
    assert error_of(e) == ("NoSuchCachePolicy", 404)
    config["CacheBehaviors"]["Items"][1]["CachePolicyId"] = policy_id
    dist = cloudfront.create_distribution(DistributionConfig=config)
    dist_id = dist["Distribution"]["Id"]
    got = cloudfront.get_distribution_config(Id=dist_id)
    ids = [b["CachePolicyId"] for b in [got["DistributionConfig"]["DefaultCacheBehavior"]]
           + got["DistributionConfig"]["CacheBehaviors"]["Items"]]
    assert ids == [CACHING_OPTIMIZED, CACHING_OPTIMIZED, policy_id]
    with pytest.raises(ClientError) as e:  # used by the /jpeg/* behaviour
        cloudfront.delete_cache_policy(Id=policy_id, IfMatch=policy_etag)
    assert error_of(e) == ("CachePolicyInUse", 409)
    # The default behaviour switches to it and the path behaviour away: still in use.
    new = got["DistributionConfig"]
    new["DefaultCacheBehavior"]["CachePolicyId"] = policy_id
    new["CacheBehaviors"]["Items"][1]["CachePolicyId"] = CACHING_OPTIMIZED
    etag = cloudfront.update_distribution(Id=dist_id, DistributionConfig=new, IfMatch=got["ETag"])["ETag"]
    assert cloudfront.get_distribution_config(Id=dist_id)["DistributionConfig"]["DefaultCacheBehavior"]["CachePolicyId"] == policy_id
    with pytest.raises(ClientError) as e:
        cloudfront.delete_cache_policy(Id=policy_id, IfMatch=policy_etag)
    assert error_of(e) == ("CachePolicyInUse", 409)
    bad = dict(new, DefaultCacheBehavior=dict(new["DefaultCacheBehavior"], CachePolicyId="11111111-0000-0000-0000-000000000000"))
    with pytest.raises(ClientError) as e:
        cloudfront.update_distribution(Id=dist_id, DistributionConfig=bad, IfMatch=etag)
    assert error_of(e) == ("NoSuchCachePolicy", 404)
    # No longer referenced: deletable.
    new["DefaultCacheBehavior"]["CachePolicyId"] = CACHING_OPTIMIZED
    cloudfront.update_distribution(Id=dist_id, DistributionConfig=new, IfMatch=etag)
    cloudfront.delete_cache_policy(Id=policy_id, IfMatch=policy_etag)


# ------------------------------------------------------------------------------------------------
# patches: lambda-add-permission-duplicate-sid, dynamodb-update-table-sse; IAM facts
# ------------------------------------------------------------------------------------------------


def test_duplicate_permission_statement_id_conflicts(client):
    lam = client("lambda")
    fn = _function(client, uid("emu-fn"))
    args = dict(FunctionName=fn, StatementId="s3-invoke", Action="lambda:InvokeFunction",
                Principal="s3.amazonaws.com", SourceArn="arn:aws:s3:::b", SourceAccount=ACCOUNT)
    lam.add_permission(**args)
    with pytest.raises(ClientError) as e:
        lam.add_permission(**args)
    assert error_of(e) == ("ResourceConflictException", 409)
    lam.remove_permission(FunctionName=fn, StatementId="s3-invoke")
    with pytest.raises(ClientError) as e:
        lam.get_policy(FunctionName=fn)
    assert error_of(e) == ("ResourceNotFoundException", 404)


def test_update_table_applies_sse(client):
    ddb = client("dynamodb")
    name = uid("emu-table")
    ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
    assert "SSEDescription" not in ddb.describe_table(TableName=name)["Table"]
    updated = ddb.update_table(TableName=name, SSESpecification={"Enabled": True, "SSEType": "KMS"})
    assert updated["TableDescription"]["SSEDescription"]["Status"] == "ENABLED"
    assert ddb.describe_table(TableName=name)["Table"]["SSEDescription"]["SSEType"] == "KMS"
    ddb.update_table(TableName=name, SSESpecification={"Enabled": False})
    assert "SSEDescription" not in ddb.describe_table(TableName=name)["Table"]


def test_iam_managed_policies_exist_and_documents_are_url_encoded_like_aws(client):
    iam = client("iam")
    raw: dict[str, str] = {}
    iam.meta.events.register("before-parse.iam.GetRolePolicy",
                             lambda response_dict, **_: raw.update(body=response_dict["body"].decode()))
    name = uid("emu-role")
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))
    iam.attach_role_policy(RoleName=name, PolicyArn="arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole")
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}
    iam.put_role_policy(RoleName=name, PolicyName="inline", PolicyDocument=json.dumps(doc))
    assert iam.get_role_policy(RoleName=name, PolicyName="inline")["PolicyDocument"] == doc  # boto3 decodes
    # On the wire (what aws-sdk-rust hands you): URL-encoded JSON, as on AWS.
    wire = raw["body"].split("<PolicyDocument>")[1].split("</PolicyDocument>")[0]
    assert wire.startswith("%7B") and json.loads(urllib.parse.unquote(wire)) == doc


def test_create_bucket_applies_tags_from_create_bucket_configuration(s3):
    name = uid("tagged-at-create")
    s3.create_bucket(
        Bucket=name,
        CreateBucketConfiguration={"Tags": [{"Key": "imagestack.dev/stack", "Value": "ns/a"}]},
    )
    try:
        tags = s3.get_bucket_tagging(Bucket=name)["TagSet"]
        assert tags == [{"Key": "imagestack.dev/stack", "Value": "ns/a"}]
    finally:
        s3.delete_bucket(Bucket=name)


def test_unconfigured_versioning_accelerate_notification_use_aws_root_elements(emu_env, bucket):
    # aws-sdk-rust checks the root element name; boto3 does not, so read the raw XML.
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    from botocore.credentials import Credentials

    creds = Credentials(emu_env["AWS_ACCESS_KEY_ID"], emu_env["AWS_SECRET_ACCESS_KEY"])
    for query, root in (("versioning", "VersioningConfiguration"), ("accelerate", "AccelerateConfiguration"),
                        ("notification", "NotificationConfiguration")):
        url = f"{emu_env['AWS_ENDPOINT_URL']}/{bucket}/?{query}"
        req = AWSRequest(method="GET", url=url)
        SigV4Auth(creds, "s3", "us-east-1").add_auth(req)
        ctx = ssl.create_default_context(cafile=emu_env["AWS_CA_BUNDLE"])
        r = urllib.request.Request(url, headers=dict(req.headers))
        body = urllib.request.urlopen(r, context=ctx).read().decode()
        assert f"<{root} " in body or f"<{root}>" in body, body


def test_lambda_invocation_log_events_have_integer_timestamps(client):
    # moto cannot run the code (no Docker) and logs the attempt; the timestamp must be a long.
    lam, logs = client("lambda"), client("logs")
    name = uid("emu-fn-logs")
    _function(client, name)
    lam.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")
    group = f"/aws/lambda/{name}"
    deadline = time.time() + 60
    events = []
    while time.time() < deadline and not events:
        try:
            events = logs.filter_log_events(logGroupName=group)["events"]
        except ClientError:
            events = []
        if not events:
            time.sleep(0.2)
    assert events, "no invocation attempt logged"
    raw = json.dumps(events[0]["timestamp"])
    assert "." not in raw, f"timestamp {raw} is not an integer"


def test_get_function_reports_a_reserved_concurrency_of_zero(client):
    lam = client("lambda")
    fn = _function(client, uid("emu-fn-conc"))
    assert "Concurrency" not in lam.get_function(FunctionName=fn)
    lam.put_function_concurrency(FunctionName=fn, ReservedConcurrentExecutions=5)
    assert lam.get_function(FunctionName=fn)["Concurrency"] == {"ReservedConcurrentExecutions": 5}
    lam.put_function_concurrency(FunctionName=fn, ReservedConcurrentExecutions=0)
    assert lam.get_function(FunctionName=fn).get("Concurrency") == {"ReservedConcurrentExecutions": 0}
    lam.delete_function_concurrency(FunctionName=fn)
    assert "Concurrency" not in lam.get_function(FunctionName=fn)


# ------------------------------------------------------------------------------------------------
# patch: iam-enforcement-actions-and-resources (only on a private instance: enforcement is global)
# ------------------------------------------------------------------------------------------------

needs_private_instance = pytest.mark.skipif(
    os.environ.get("IMAGESTACK_EMULATOR_ALLOW_RESET") != "1",
    reason="turns IAM enforcement on for the whole emulator; runs on test.sh's private instance")


def _reset_auth(emu_env, count: str) -> None:
    ctx = ssl.create_default_context(cafile=emu_env["AWS_CA_BUNDLE"])
    req = urllib.request.Request(emu_env["AWS_ENDPOINT_URL"] + "/moto-api/reset-auth", data=count.encode(),
                                 method="POST", headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(req, context=ctx) as r:
        assert r.status == 200


@pytest.fixture
def as_user(client, emu_env):
    """as_user(policy) -> a client factory for a new IAM user with that inline policy; IAM
    enforcement is on from the first call until the test ends."""
    def make(policy: dict):
        iam = client("iam")
        name = uid("emu-user")
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        _reset_auth(emu_env, "0")
        session = boto3.Session(aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
                                region_name=emu_env["AWS_REGION"])
        config = Config(retries={"max_attempts": 1, "mode": "standard"}, s3={"addressing_style": "path"})
        return lambda service: session.client(service, endpoint_url=emu_env["AWS_ENDPOINT_URL"],
                                              verify=emu_env["AWS_CA_BUNDLE"], config=config)

    yield make
    _reset_auth(emu_env, "inf")


def _allow(*statements: tuple) -> dict:
    """A policy of Allow statements (actions, resources[, condition])."""
    out = []
    for st in statements:
        s = {"Effect": "Allow", "Action": list(st[0]), "Resource": list(st[1])}
        if len(st) > 2:
            s["Condition"] = st[2]
        out.append(s)
    return {"Version": "2012-10-17", "Statement": out}


def test_identity_policy_evaluation():
    ev = patches.evaluate_identity_policies
    pol = _allow((["iam:PassRole"], ["arn:aws:iam::1:role/p-*"],
                  {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}}))
    lam = {"iam:passedtoservice": ["lambda.amazonaws.com"]}
    assert ev([pol], "iam:PassRole", "arn:aws:iam::1:role/p-x", lam) == "Allow"
    assert ev([pol], "iam:PassRole", "arn:aws:iam::1:role/p-x", {"iam:passedtoservice": ["ec2.amazonaws.com"]}) == "Neutral"
    assert ev([pol], "iam:PassRole", "arn:aws:iam::1:role/q-x", lam) == "Neutral"
    deny = {"Statement": [{"Effect": "Deny", "Action": "iam:*", "Resource": "*"}]}
    assert ev([pol, deny], "iam:PassRole", "arn:aws:iam::1:role/p-x", lam) == "Deny"


@needs_private_instance
def test_enforcement_checks_the_resource_arn_not_star(as_user):
    # moto 5.2.5 authorises every DynamoDB call on resource "*": a table-scoped Allow denies all.
    ddb = as_user(_allow((["dynamodb:CreateTable", "dynamodb:DescribeTable"],
                          [f"arn:aws:dynamodb:*:{ACCOUNT}:table/emu-ok-*"])))("dynamodb")
    spec = dict(KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    ok = uid("emu-ok")
    ddb.create_table(TableName=ok, **spec)
    assert ddb.describe_table(TableName=ok)["Table"]["TableName"] == ok
    other = uid("emu-other")
    with pytest.raises(ClientError) as e:
        ddb.create_table(TableName=other, **spec)
    assert error_of(e) == ("AccessDeniedException", 403)
    msg = e.value.response["Error"]["Message"]
    assert "dynamodb:CreateTable" in msg and f"table/{other}" in msg, msg


@needs_private_instance
def test_enforcement_checks_pass_role_with_passed_to_service(as_user, client):
    allowed, other = uid("emu-pass"), uid("emu-nopass")
    iam = client("iam")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                     "Action": "sts:AssumeRole"}]}
    roles = {n: iam.create_role(RoleName=n, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
             for n in (allowed, other)}
    lam = as_user(_allow((["lambda:*"], ["*"]),
                         (["iam:PassRole"], [f"arn:aws:iam::{ACCOUNT}:role/emu-pass-*"],
                          {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}})))("lambda")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\n")
    fn = dict(Runtime="provided.al2023", Handler="bootstrap", Code={"ZipFile": buf.getvalue()})
    lam.create_function(FunctionName=allowed, Role=roles[allowed], **fn)
    with pytest.raises(ClientError) as e:  # plain moto never checks iam:PassRole
        lam.create_function(FunctionName=other, Role=roles[other], **fn)
    assert error_of(e) == ("AccessDeniedException", 403)
    assert "iam:PassRole" in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        lam.update_function_configuration(FunctionName=allowed, Role=roles[other])
    assert "iam:PassRole" in e.value.response["Error"]["Message"]
    # A bodiless GET is signed over an empty payload (plain moto: SignatureDoesNotMatch).
    assert lam.get_function(FunctionName=allowed)["Configuration"]["FunctionName"] == allowed


@needs_private_instance
def test_enforcement_uses_iam_action_names(as_user):
    bucket, alarm = uid("emu-iam"), uid("emu-alarm")
    user = as_user(_allow(
        (["s3:CreateBucket", "s3:ListBucket", "s3:PutEncryptionConfiguration"], [f"arn:aws:s3:::{bucket}"]),
        (["cloudwatch:PutMetricAlarm", "cloudwatch:DescribeAlarms"],
         [f"arn:aws:cloudwatch:*:{ACCOUNT}:alarm:{alarm}"])))
    s3, cw = user("s3"), user("cloudwatch")
    s3.create_bucket(Bucket=bucket)
    s3.head_bucket(Bucket=bucket)  # s3:ListBucket (plain moto: s3:HeadBucket)
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})  # plain: s3:CreateBucket
    with pytest.raises(ClientError) as e:  # s3:PutBucketVersioning is not allowed
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert error_of(e) == ("AccessDenied", 403)
    assert "s3:PutBucketVersioning" in e.value.response["Error"]["Message"]
    # CloudWatch's actions are cloudwatch:* (plain moto: monitoring:*, on resource "*").
    cw.put_metric_alarm(AlarmName=alarm, MetricName="Errors", Namespace="AWS/Lambda", Statistic="Sum", Period=60,
                        EvaluationPeriods=1, Threshold=0, ComparisonOperator="GreaterThanThreshold")
    assert [a["AlarmName"] for a in cw.describe_alarms(AlarmNames=[alarm])["MetricAlarms"]] == [alarm]
    with pytest.raises(ClientError) as e:
        cw.put_metric_alarm(AlarmName=uid("emu-other"), MetricName="Errors", Namespace="AWS/Lambda",
                            Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=0,
                            ComparisonOperator="GreaterThanThreshold")
    assert error_of(e) == ("AccessDenied", 403)


@needs_private_instance
def test_enforcement_checks_a_form_post_over_its_body_as_sent(as_user, emu_env):
    # aws-sdk-rust encodes a space in a query-protocol (IAM, CloudWatch) form value as %20,
    # botocore as "+"; plain moto re-encodes its parsed form the botocore way and checks the
    # signature over that: every such Rust call was SignatureDoesNotMatch.
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    iam = as_user(_allow((["iam:CreateRole"], [f"arn:aws:iam::{ACCOUNT}:role/emu-form-*"])))("iam")
    creds = iam._request_signer._credentials.get_frozen_credentials()
    ctx = ssl.create_default_context(cafile=emu_env["AWS_CA_BUNDLE"])

    def post(role: str) -> tuple[int, str]:
        params = [("Action", "CreateRole"), ("Version", "2010-05-08"), ("RoleName", role),
                  ("AssumeRolePolicyDocument", '{"Version":"2012-10-17","Statement":[]}'),
                  ("Description", "made by aws-sdk-rust")]
        body = "&".join(f"{urllib.parse.quote(k, safe='')}={urllib.parse.quote(v, safe='')}"
                        for k, v in params)
        req = AWSRequest(method="POST", url=emu_env["AWS_ENDPOINT_URL"] + "/", data=body,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        SigV4Auth(creds, "iam", "us-east-1").add_auth(req)
        http = urllib.request.Request(req.url, data=body.encode(), method="POST", headers=dict(req.headers))
        try:
            with urllib.request.urlopen(http, context=ctx) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    ok = uid("emu-form")
    status, text = post(ok)
    assert status == 200 and f"<RoleName>{ok}</RoleName>" in text, text
    other = uid("emu-noform")
    status, text = post(other)  # the policy is still checked, and the denial reads like AWS's
    assert status == 403 and "<Code>AccessDenied</Code>" in text, text
    assert f"iam:CreateRole on resource: arn:aws:iam::{ACCOUNT}:role/{other}" in text, text


@needs_private_instance
def test_enforcement_checks_tag_on_create(as_user, client):
    # AWS authorises the tags of a create call as the service's tagging action (plain moto:
    # never), and Lambda's GetFunction of a tagged function also as lambda:ListTags.
    fn_tagged, fn_plain = uid("emu-tagfn"), uid("emu-tagfn")
    role = client("iam").create_role(RoleName=uid("emu-tagrole"), AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                 "Principal": {"Service": "lambda.amazonaws.com"}}]}))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\n")
    for name, tags in ((fn_tagged, {"k": "v"}), (fn_plain, {})):
        client("lambda").create_function(FunctionName=name, Role=role["Role"]["Arn"], Runtime="provided.al2023",
                                         Handler="bootstrap", Code={"ZipFile": buf.getvalue()}, Tags=tags)
    user = as_user(_allow(
        (["iam:CreateRole"], [f"arn:aws:iam::{ACCOUNT}:role/emu-tag-*"]),
        (["sqs:CreateQueue"], [f"arn:aws:sqs:*:{ACCOUNT}:emu-tag-*"]),
        (["lambda:GetFunction"], [f"arn:aws:lambda:*:{ACCOUNT}:function:emu-tagfn-*"])))
    iam, sqs, lam = user("iam"), user("sqs"), user("lambda")
    trust = json.dumps({"Version": "2012-10-17", "Statement": []})
    iam.create_role(RoleName=uid("emu-tag"), AssumeRolePolicyDocument=trust)
    with pytest.raises(ClientError) as e:
        iam.create_role(RoleName=uid("emu-tag"), AssumeRolePolicyDocument=trust, Tags=[{"Key": "k", "Value": "v"}])
    assert error_of(e) == ("AccessDenied", 403) and "iam:TagRole" in e.value.response["Error"]["Message"]
    sqs.create_queue(QueueName=uid("emu-tag"))
    with pytest.raises(ClientError) as e:
        sqs.create_queue(QueueName=uid("emu-tag"), tags={"k": "v"})
    assert "sqs:TagQueue" in e.value.response["Error"]["Message"]
    assert lam.get_function(FunctionName=fn_plain)["Configuration"]["FunctionName"] == fn_plain
    with pytest.raises(ClientError) as e:
        lam.get_function(FunctionName=fn_tagged)
    assert "lambda:ListTags" in e.value.response["Error"]["Message"]


@needs_private_instance
def test_enforcement_checks_cloudfront_functions_by_name(as_user):
    # A CloudFront function's ARN is function/<name> (plain moto: every call on "*").
    cf = as_user(_allow((["cloudfront:CreateFunction", "cloudfront:DescribeFunction", "cloudfront:GetFunction"],
                         [f"arn:aws:cloudfront::{ACCOUNT}:function/emu-cf-*"])))("cloudfront")
    fn = dict(FunctionConfig={"Comment": "x", "Runtime": "cloudfront-js-2.0"},
              FunctionCode=b"function handler(event) { return event.request; }")
    ok = uid("emu-cf")
    cf.create_function(Name=ok, **fn)
    assert cf.describe_function(Name=ok)["FunctionSummary"]["Name"] == ok
    other = uid("emu-nocf")
    with pytest.raises(ClientError) as e:
        cf.create_function(Name=other, **fn)
    assert error_of(e) == ("AccessDenied", 403)
    assert f"cloudfront:CreateFunction on resource: arn:aws:cloudfront::{ACCOUNT}:function/{other}" in \
        e.value.response["Error"]["Message"]


def test_cloudfront_paths_name_the_iam_resource():
    from types import SimpleNamespace

    def checks(method: str, path: str, op: str) -> list:
        resp = SimpleNamespace(path=path, method=method, body=b"", headers={}, querystring={}, params={},
                               uri_match={})
        return [(a, r) for a, r, _ in patches._iam_checks(resp, "cloudfront", op, "us-east-1", ACCOUNT, "aws")]

    fn = f"arn:aws:cloudfront::{ACCOUNT}:function/imagestack-x"
    assert checks("POST", "/2020-05-31/function/imagestack-x/publish", "PublishFunction") == [
        ("cloudfront:PublishFunction", fn)]
    assert checks("GET", "/2020-05-31/function/imagestack-x/describe", "DescribeFunction") == [
        ("cloudfront:DescribeFunction", fn)]
    assert checks("PUT", "/2020-05-31/function/imagestack-x", "UpdateFunction") == [("cloudfront:UpdateFunction", fn)]
    assert checks("GET", "/2020-05-31/cache-policy/abc-123", "GetCachePolicy") == [
        ("cloudfront:GetCachePolicy", f"arn:aws:cloudfront::{ACCOUNT}:cache-policy/abc-123")]
    assert checks("POST", "/2020-05-31/cache-policy", "CreateCachePolicy") == [
        ("cloudfront:CreateCachePolicy", f"arn:aws:cloudfront::{ACCOUNT}:cache-policy/*")]
