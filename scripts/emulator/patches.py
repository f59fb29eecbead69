"""Monkeypatches for moto 5.2.5, applied by server.py before the server starts.

Each patch says what real AWS does, what moto 5.2.5 does instead (measured against this exact
version; see README.md for the measurement and test_patches.py for the proof), and what the patch
changes. Patches are small and only touch moto in this process; `POST /moto-api/reset` still works
(it resets the backends; the patched classes stay patched).

    import patches; patches.apply()   # -> list of applied patch names
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import sys
import uuid
from typing import Any, Callable

import moto

EXPECTED_MOTO = "5.2.5"
_APPLIED: list[str] = []
_PATCHES: list[tuple[str, Callable[[], None]]] = []


def _patch(name: str) -> Callable[[Callable[[], None]], Callable[[], None]]:
    def register(fn: Callable[[], None]) -> Callable[[], None]:
        _PATCHES.append((name, fn))
        return fn

    return register


def apply() -> list[str]:
    """Apply every patch once (idempotent). Refuses any moto other than 5.2.5: the patches wrap
    private moto code and were measured against that version only."""
    if moto.__version__ != EXPECTED_MOTO:
        raise RuntimeError(f"patches.py was written for moto {EXPECTED_MOTO}, found {moto.__version__}")
    if not _APPLIED:
        for name, fn in _PATCHES:
            fn()
            _APPLIED.append(name)
    return list(_APPLIED)


def _wrap(owner: Any, attr: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Replace owner.attr by make(original), keeping the original's name/docstring."""
    original = getattr(owner, attr)
    setattr(owner, attr, functools.wraps(original)(make(original)))


# =================================================================================================
# IAM-style policy evaluation (used for S3 bucket policies, and to validate S3 -> Lambda
# notification destinations). Supports the condition operators our stacks use and the common rest:
#   String{Equals,NotEquals,EqualsIgnoreCase,NotEqualsIgnoreCase,Like,NotLike},
#   Arn{Equals,NotEquals,Like,NotLike}, Bool, Null, Numeric*, IpAddress, NotIpAddress,
#   the ...IfExists suffix and the ForAnyValue:/ForAllValues: prefixes.
# Semantics follow the IAM reference ("Condition operators"): keys are case-insensitive; all
# operators and all keys of a Condition must hold (AND); several values for one key are OR-ed; a key
# missing from the request context makes the condition false, except for negated operators
# (String/Arn/Numeric Not..., NotIpAddress), ...IfExists, ForAllValues: and Null.
# An operator not listed above (Date*, Binary*) raises NotImplementedError -> HTTP 500, so a test
# using one fails loudly instead of being evaluated wrongly.
# =================================================================================================

_NEGATED = {
    "StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "ArnNotEquals", "ArnNotLike",
    "NumericNotEquals", "NotIpAddress",
}


def _glob(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """IAM wildcards: * = any run of characters, ? = one character; nothing else is special."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL) is not None


def _arn_like(pattern: str, value: str) -> bool:
    """ArnLike/ArnEquals: each of the six colon-separated parts is matched separately."""
    p_parts, v_parts = pattern.split(":", 5), value.split(":", 5)
    return len(p_parts) == len(v_parts) == 6 and all(map(_glob, p_parts, v_parts))


def _num(a: str) -> float:
    return float(a)


_OPERATORS: dict[str, Callable[[str, str], bool]] = {
    # operator -> positive test(request_value, policy_value); negated operators use the positive one
    "StringEquals": lambda v, p: v == p,
    "StringEqualsIgnoreCase": lambda v, p: v.lower() == p.lower(),
    "StringLike": lambda v, p: _glob(p, v),
    "ArnEquals": lambda v, p: _arn_like(p, v),
    "ArnLike": lambda v, p: _arn_like(p, v),
    "Bool": lambda v, p: v.lower() == p.lower(),
    "NumericEquals": lambda v, p: _num(v) == _num(p),
    "NumericLessThan": lambda v, p: _num(v) < _num(p),
    "NumericLessThanEquals": lambda v, p: _num(v) <= _num(p),
    "NumericGreaterThan": lambda v, p: _num(v) > _num(p),
    "NumericGreaterThanEquals": lambda v, p: _num(v) >= _num(p),
    "IpAddress": lambda v, p: ipaddress.ip_address(v) in ipaddress.ip_network(p, strict=False),
}
_POSITIVE_OF = {
    "StringNotEquals": "StringEquals", "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike", "ArnNotEquals": "ArnEquals", "ArnNotLike": "ArnLike",
    "NumericNotEquals": "NumericEquals", "NotIpAddress": "IpAddress",
}


def _as_strings(value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value]
    return [str(v).lower() if isinstance(v, bool) else str(v) for v in values]


def _operator_holds(op: str, key: str, policy_values: Any, context: dict[str, list[str]]) -> bool:
    qualifier = None
    if ":" in op:
        qualifier, op = op.split(":", 1)  # ForAnyValue / ForAllValues
    if_exists = op.endswith("IfExists")
    if if_exists:
        op = op[: -len("IfExists")]
    expected = _as_strings(policy_values)
    actual = context.get(key.lower())

    if op == "Null":  # "true": the key must be absent; "false": present
        return (actual is None) == (expected[0].lower() == "true")
    negated = op in _NEGATED
    test = _OPERATORS.get(_POSITIVE_OF.get(op, op))
    if test is None:
        raise NotImplementedError(f"emulator patches.py: condition operator {op!r} is not supported")
    if actual is None:
        return if_exists or negated or qualifier == "ForAllValues"

    def matches(v: str) -> bool:
        hit = any(test(v, p) for p in expected)
        return not hit if negated else hit

    if qualifier == "ForAllValues":
        return all(matches(v) for v in actual)
    return any(matches(v) for v in actual)  # ForAnyValue and single-valued keys


def condition_holds(condition: dict[str, Any] | None, context: dict[str, list[str]]) -> bool:
    """True when every operator/key of a policy statement's Condition holds for the context
    (context keys lower-case, each with a list of values)."""
    for op, block in (condition or {}).items():
        for key, values in block.items():
            if not _operator_holds(op, key, values, context):
                return False
    return True


def _matches_any(patterns: Any, value: str, ignore_case: bool) -> bool:
    return any(_glob(p, value, ignore_case) for p in _as_strings(patterns))


def _principal_matches(principal: Any, caller_account: str | None) -> bool:
    """Does a policy Principal name the caller? caller_account is None for anonymous requests.
    "*" / {"AWS": "*"} match everyone; {"AWS": account id, root ARN or any ARN in the account}
    matches signed requests from that account (moto does not track which IAM identity an access
    key belongs to, so any identity in the account counts); Service/Federated/CanonicalUser
    principals never match an SDK request (services call on their own behalf)."""
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        return False
    for kind, values in principal.items():
        for v in _as_strings(values):
            if kind == "AWS" and v == "*":
                return True
            if kind == "AWS" and caller_account and (v == caller_account or f":{caller_account}:" in v):
                return True
    return False


def evaluate_policy(policy: dict[str, Any], action: str, resource: str, caller_account: str | None,
                    context: dict[str, list[str]]) -> str:
    """Resource-policy evaluation: "Deny" if an applicable statement denies, else "Allow" if one
    allows, else "Neutral". A statement applies when its (Not)Principal, (Not)Action,
    (Not)Resource and Condition all match the request."""
    statements = policy.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    decision = "Neutral"
    for st in statements:
        if "NotPrincipal" in st:
            if _principal_matches(st["NotPrincipal"], caller_account):
                continue
        elif not _principal_matches(st.get("Principal"), caller_account):
            continue
        if "NotAction" in st:
            if _matches_any(st["NotAction"], action, True):
                continue
        elif not _matches_any(st.get("Action", []), action, True):
            continue
        if "NotResource" in st:
            if _matches_any(st["NotResource"], resource, False):
                continue
        elif not _matches_any(st.get("Resource", "*"), resource, False):
            continue
        if not condition_holds(st.get("Condition"), context):
            continue
        if st.get("Effect") == "Deny":
            return "Deny"
        if st.get("Effect") == "Allow":
            decision = "Allow"
    return decision


# =================================================================================================
# S3
# =================================================================================================

_S3_ACCESS_DENIED = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    "<Message>Access Denied</Message><RequestId>emulator</RequestId><HostId>emulator</HostId></Error>"
)


def _s3_request_context() -> tuple[str | None, dict[str, list[str]]]:
    """(caller account or None if anonymous, condition context) of the S3 request being served.
    Read from Flask's request context: moto's server runs every request inside one."""
    try:
        import flask

        if not flask.has_request_context():
            return None, {}
        req = flask.request
    except ImportError:  # pragma: no cover - moto[server] always has flask
        return None, {}
    context: dict[str, list[str]] = {
        # The request really came over TLS (werkzeug sets wsgi.url_scheme=https with ssl_context).
        "aws:securetransport": ["true" if req.scheme == "https" else "false"],
    }
    if req.remote_addr:
        context["aws:sourceip"] = [req.remote_addr]
    for header in ("x-amz-server-side-encryption", "x-amz-acl",
                   "x-amz-server-side-encryption-aws-kms-key-id"):
        if header in req.headers:
            context[f"s3:{header}"] = [req.headers[header]]
    m = re.search(r"Credential=([^/,\s]+)/", req.headers.get("Authorization", "")) or \
        re.search(r"^([^/]+)/", req.args.get("X-Amz-Credential", ""))
    access_key = m.group(1) if m else req.args.get("AWSAccessKeyId")
    if not access_key:
        return None, context  # anonymous
    from moto.iam.models import get_account_id_from

    account = req.headers.get("x-moto-account-id") or get_account_id_from(access_key)
    context["aws:principalaccount"] = [account]
    return account, context


@_patch("s3-bucket-policy-conditions")
def _s3_bucket_policy() -> None:
    """S3 bucket policies.
    AWS: a statement applies only when its Principal, Action, Resource and Condition all match;
      explicit Deny wins, then Allow, else the identity policy decides. aws:SecureTransport is true
      for HTTPS requests.
    moto 5.2.5 (moto/iam/access_control.py IAMPolicyStatement): only StringEquals is evaluated and
      the request supplies no condition values, so every condition (Bool, StringEquals, ...) counts
      as holding; a statement whose condition fails returns DENIED even when it is an Allow.
      Measured: with the TLS-only policy (Deny s3:* if aws:SecureTransport=false) PutObject,
      GetObject and HeadObject get 403 and DeleteObjects reports AccessDenied for every key, over
      HTTPS. Denials are an empty 403 body (SDKs see code "403", not AccessDenied).
    Patch: FakeBucket.get_permission evaluates the policy with evaluate_policy() above and a
      context taken from the real request (aws:SecureTransport from its scheme, aws:SourceIp,
      aws:PrincipalAccount, s3:x-amz-server-side-encryption/-acl headers; aws:SourceArn and
      aws:SourceAccount are absent, as for any direct SDK call). moto names the action after the
      HTTP method; HEAD is evaluated as s3:GetObject and POST as s3:PutObject, as AWS does for
      HeadObject and multipart uploads. A denied object request now gets the AccessDenied XML.
      Bucket-level calls (ListObjectVersions, Get/PutBucket*) stay unchecked, as in moto."""
    from moto.iam.access_control import PermissionResult
    from moto.s3.models import FakeBucket
    from moto.s3.responses import S3Response

    action_alias = {"s3:HeadObject": "s3:GetObject", "s3:PostObject": "s3:PutObject"}

    def get_permission(self: Any, action: str, resource: str) -> Any:
        if self.policy is None:
            return PermissionResult.NEUTRAL
        policy = json.loads(self.policy.decode() if isinstance(self.policy, bytes) else self.policy)
        caller, context = _s3_request_context()
        result = evaluate_policy(policy, action_alias.get(action, action), resource, caller, context)
        return {"Deny": PermissionResult.DENIED, "Allow": PermissionResult.PERMITTED}.get(
            result, PermissionResult.NEUTRAL)

    FakeBucket.get_permission = get_permission

    def make_key_response(original: Callable[..., Any]) -> Callable[..., Any]:
        def _key_response(self: Any, *args: Any, **kwargs: Any) -> Any:
            result = original(self, *args, **kwargs)
            if isinstance(result, tuple) and len(result) == 3 and result[0] == 403 and not result[2]:
                return 403, {"Content-Type": "application/xml"}, _S3_ACCESS_DENIED
            return result

        return _key_response

    _wrap(S3Response, "_key_response", make_key_response)


@_patch("s3-notification-destination-validation")
def _s3_notification_validation() -> None:
    """S3 -> Lambda notifications.
    AWS: PutBucketNotificationConfiguration checks every Lambda destination: the function must
      exist and its resource policy must let s3.amazonaws.com invoke it for this bucket (SourceArn/
      SourceAccount conditions); otherwise 400 InvalidArgument "Unable to validate the following
      destination configurations".
    moto 5.2.5: accepts any well-formed ARN, even of a function that does not exist or has no
      permission (measured), so an operator that configures the notification before the
      permission passes here and fails on AWS.
    Patch: the same check, using moto's Lambda backend and evaluate_policy() above with
      aws:SourceArn=arn:aws:s3:::BUCKET and aws:SourceAccount=the bucket's account."""
    from moto.awslambda.models import lambda_backends
    from moto.s3.exceptions import S3ClientError
    from moto.s3.models import FakeBucket

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def set_notification_configuration(self: Any, notification_config: Any) -> Any:
            bad = []
            for n in (notification_config or {}).get("CloudFunctionConfiguration") or []:
                arn = n.get("CloudFunction", "")
                parts = arn.split(":")
                ok = False
                if len(parts) >= 7:
                    try:
                        fn = lambda_backends[parts[4]][parts[3]].get_function(arn)
                        policy = {"Statement": list(fn.policy.statements)}
                        ctx = {"aws:sourcearn": [f"arn:{self.partition}:s3:::{self.name}"],
                               "aws:sourceaccount": [self.account_id]}
                        ok = _lambda_policy_allows_s3(policy, ctx)
                    except Exception:  # noqa: BLE001 - unknown function/account/region: invalid
                        ok = False
                if not ok:
                    bad.append(arn)
            if bad:
                raise S3ClientError(
                    "InvalidArgument",
                    "Unable to validate the following destination configurations: " + ", ".join(bad),
                )
            return original(self, notification_config)

        return set_notification_configuration

    _wrap(FakeBucket, "set_notification_configuration", make)


def _lambda_policy_allows_s3(policy: dict[str, Any], ctx: dict[str, list[str]]) -> bool:
    for st in policy["Statement"]:
        principal = st.get("Principal")
        services = _as_strings(principal.get("Service", [])) if isinstance(principal, dict) else []
        if st.get("Effect") != "Allow" or not (principal == "*" or "s3.amazonaws.com" in services):
            continue
        if not _matches_any(st.get("Action", []), "lambda:InvokeFunction", True):
            continue
        if condition_holds(st.get("Condition"), ctx):
            return True
    return False


# =================================================================================================
# CloudFront
# =================================================================================================


def _cf_error(code: str, message: str) -> Exception:
    """A CloudFront error; moto takes the HTTP status from the AWS model for `code`."""
    from moto.cloudfront.exceptions import CloudFrontException

    return CloudFrontException(code, message)


def _new_etag() -> str:
    from moto.cloudfront.models import random_id

    return random_id()


def _check_if_match(if_match: str | None, etag: str) -> None:
    if not if_match:
        raise _cf_error("InvalidIfMatchVersion", "The If-Match version is missing or not valid for the resource.")
    if if_match != etag:
        raise _cf_error("PreconditionFailed",
                        "The precondition given in one or more of the request-header fields evaluated to false.")


@_patch("cloudfront-origin-and-behaviour-round-trip")
def _cloudfront_round_trip() -> None:
    """CloudFront distribution config round-trip.
    AWS: GetDistribution/GetDistributionConfig return each origin's OriginAccessControlId ("" when
      none) and S3OriginConfig exactly as sent; a cache behaviour that uses a cache policy
      (CachePolicyId) has no ForwardedValues/MinTTL/DefaultTTL/MaxTTL (AWS rejects sending both),
      and OriginRequestPolicyId is absent unless set.
    moto 5.2.5 (cloudfront/models.py Origin, DefaultCacheBehaviour): drops OriginAccessControlId
      and S3OriginConfig on read (measured); fills ForwardedValues + TTL 0s into every behaviour
      and OriginRequestPolicyId="" into CacheBehaviors items, so a desired-vs-observed diff never
      converges and a read-modify-write would be rejected by AWS.
    Patch: Origin keeps OriginAccessControlId and S3OriginConfig as sent; behaviours with a
      CachePolicyId drop the ForwardedValues/TTL defaults the caller did not send, and
      OriginRequestPolicyId stays absent unless sent."""
    from moto.cloudfront import models as cf

    def make_origin(original: Callable[..., Any]) -> Callable[..., Any]:
        def __init__(self: Any, origin: dict[str, Any]) -> None:
            original(self, origin)
            self.origin_access_control_id = origin.get("OriginAccessControlId") or ""
            s3 = origin.get("S3OriginConfig")
            if s3 is not None:
                s3 = dict(s3 or {})
                s3["OriginAccessIdentity"] = s3.get("OriginAccessIdentity") or ""
            self.s3_origin_config = s3

        return __init__

    _wrap(cf.Origin, "__init__", make_origin)

    def make_behaviour(original: Callable[..., Any]) -> Callable[..., Any]:
        def __init__(self: Any, config: dict[str, Any]) -> None:
            original(self, config)
            if "OriginRequestPolicyId" not in config:
                self.origin_request_policy_id = None
            if config.get("CachePolicyId"):
                if "ForwardedValues" not in config:
                    self.forwarded_values = None
                for key, attr in (("MinTTL", "min_ttl"), ("DefaultTTL", "default_ttl"), ("MaxTTL", "max_ttl")):
                    if key not in config:
                        setattr(self, attr, None)

        return __init__

    _wrap(cf.DefaultCacheBehaviour, "__init__", make_behaviour)
    _wrap(cf.CacheBehaviour, "__init__", make_behaviour)


@_patch("cloudfront-distribution-etag-ifmatch-delete")
def _cloudfront_etag() -> None:
    """CloudFront distribution ETag / IfMatch / delete.
    AWS: every successful UpdateDistribution returns a new ETag and puts the distribution back to
      InProgress; Update/Delete with a missing IfMatch fail with InvalidIfMatchVersion (400) and
      with a stale one with PreconditionFailed (412); DeleteDistribution of a distribution that is
      enabled (or whose disabling is not yet Deployed) fails with DistributionNotDisabled (409).
    moto 5.2.5: checks only that IfMatch is non-empty; the ETag never changes; the status stays
      Deployed; an enabled distribution is deleted (all measured).
    Patch: enforce IfMatch against the current ETag, rotate the ETag and set Status=InProgress
      (moto's state manager moves it to Deployed; by default on the next read) on update, and
      refuse to delete unless Enabled=false and Status=Deployed."""
    from moto.cloudfront import models as cf
    from moto.core.utils import utcnow

    def make_update(original: Callable[..., Any]) -> Callable[..., Any]:
        def update_distribution(self: Any, dist_config: Any, _id: str, if_match: Any) -> Any:
            if _id is None or _id not in self.distributions:
                raise cf.NoSuchDistribution
            dist = self.distributions[_id]
            _check_if_match(if_match, dist.etag)
            original(self, dist_config=dist_config, _id=_id, if_match=if_match)
            dist.etag = _new_etag()
            dist.status = "InProgress"
            dist.last_modified_time = utcnow().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            return dist, dist.location, dist.etag

        return update_distribution

    _wrap(cf.CloudFrontBackend, "update_distribution", make_update)

    def make_delete(original: Callable[..., Any]) -> Callable[..., Any]:
        def delete_distribution(self: Any, distribution_id: str, if_match: Any) -> Any:
            if distribution_id not in self.distributions:
                raise cf.NoSuchDistribution
            dist = self.distributions[distribution_id]
            _check_if_match(if_match, dist.etag)
            enabled = dist.distribution_config.Enabled
            if enabled in (True, "true", "True") or dist.status != "Deployed":
                raise _cf_error("DistributionNotDisabled",
                                "The distribution you are trying to delete has not been disabled.")
            return original(self, distribution_id, if_match)

        return delete_distribution

    _wrap(cf.CloudFrontBackend, "delete_distribution", make_delete)


@_patch("cloudfront-origin-access-control")
def _cloudfront_oac() -> None:
    """CloudFront origin access controls (OAC).
    AWS: GetOriginAccessControlConfig returns the config and ETag; UpdateOriginAccessControl and
      DeleteOriginAccessControl need the current ETag as IfMatch (InvalidIfMatchVersion 400 /
      PreconditionFailed 412) and Update returns a new one; CreateOriginAccessControl with a name
      already in use fails with OriginAccessControlAlreadyExists (409); deleting an OAC that a
      distribution's origin uses fails with OriginAccessControlInUse (409); an unknown id gives
      NoSuchOriginAccessControl (404).
    moto 5.2.5: GetOriginAccessControlConfig is not implemented (HTTP 500); IfMatch is ignored and
      the ETag never changes; duplicate names are accepted; an OAC in use is deleted; deleting an
      unknown id is a 500 (KeyError). GetOriginAccessControl itself works (measured).
    Patch: add GetOriginAccessControlConfig; enforce IfMatch and rotate the ETag on update; check
      name uniqueness on create and existence/IfMatch/in-use on delete."""
    from moto.cloudfront import models as cf
    from moto.cloudfront.responses import CloudFrontResponse
    from moto.core.responses import ActionResult

    def get_origin_access_control_config(self: Any) -> Any:
        control = self.backend.get_origin_access_control(self._get_param("Id"))
        return ActionResult({"OriginAccessControlConfig": control, "ETag": control.etag})

    CloudFrontResponse.get_origin_access_control_config = get_origin_access_control_config

    def make_create(original: Callable[..., Any]) -> Callable[..., Any]:
        def create_origin_access_control(self: Any, config_dict: dict[str, str]) -> Any:
            if any(c.name == config_dict.get("Name") for c in self.origin_access_controls.values()):
                raise _cf_error("OriginAccessControlAlreadyExists",
                                f"An origin access control with name {config_dict.get('Name')} already exists.")
            return original(self, config_dict)

        return create_origin_access_control

    _wrap(cf.CloudFrontBackend, "create_origin_access_control", make_create)

    def make_update(original: Callable[..., Any]) -> Callable[..., Any]:
        def update_origin_access_control(self: Any) -> Any:
            control = self.backend.get_origin_access_control(self._get_param("Id"))
            _check_if_match(self._get_param("IfMatch"), control.etag)
            control.etag = _new_etag()  # before building the response, which carries the ETag
            return original(self)

        return update_origin_access_control

    _wrap(CloudFrontResponse, "update_origin_access_control", make_update)

    def make_delete(original: Callable[..., Any]) -> Callable[..., Any]:
        def delete_origin_access_control(self: Any) -> Any:
            control = self.backend.get_origin_access_control(self._get_param("Id"))
            _check_if_match(self._get_param("IfMatch"), control.etag)
            for dist in self.backend.distributions.values():
                for origin in dist.distribution_config.Origins["Items"]:
                    if getattr(origin, "origin_access_control_id", "") == control.id:
                        raise _cf_error("OriginAccessControlInUse",
                                        f"The origin access control is in use by distribution {dist.id}.")
            return original(self)

        return delete_origin_access_control

    _wrap(CloudFrontResponse, "delete_origin_access_control", make_delete)


@_patch("cloudfront-functions-stages-publish-etag-associations")
def _cloudfront_functions() -> None:
    """CloudFront Functions and their association with cache behaviours.
    AWS: a function has a DEVELOPMENT and a LIVE stage. CreateFunction and UpdateFunction write
      DEVELOPMENT (UpdateFunction and PublishFunction need the DEVELOPMENT ETag as IfMatch:
      InvalidIfMatchVersion 400 / PreconditionFailed 412; every update rotates the ETag);
      PublishFunction copies DEVELOPMENT to LIVE; DescribeFunction/GetFunction take Stage
      (default DEVELOPMENT) and a LIVE read of a never-published function is NoSuchFunctionExists
      (404); DeleteFunction needs the ETag and fails with FunctionInUse (409) while a distribution's
      cache behaviour associates it. A distribution's FunctionAssociations (FunctionARN +
      EventType per behaviour) are stored and read back as sent; associating a function that does
      not exist or has no LIVE stage is InvalidFunctionAssociation (400).
    moto 5.2.5: no UpdateFunction or PublishFunction (HTTP 500 / not routed); Stage is ignored
      (LIVE reads return the DEVELOPMENT code even before any publish); the ETag never changes
      and IfMatch is ignored on delete; an associated function is deleted; every behaviour reads
      back FunctionAssociations {Quantity: 0} whatever was sent (all measured).
    Patch: per-stage code/config/ETag on the moto function, UpdateFunction and PublishFunction
      (route /function/<name>/publish), Stage on Describe/GetFunction, IfMatch and FunctionInUse on
      delete, FunctionAssociations kept on behaviours and validated on Create/UpdateDistribution."""
    from moto.cloudfront import models as cf
    from moto.cloudfront import urls
    from moto.cloudfront.responses import CloudFrontResponse
    from moto.core.responses import ActionResult, EmptyResult
    from moto.core.utils import utcnow

    urls.url_paths["{0}/2020-05-31/function/(?P<function_name>[^/]+)/publish$"] = CloudFrontResponse.dispatch

    def no_such_function(name: str) -> Exception:
        return _cf_error("NoSuchFunctionExists", f"The function {name} does not exist.")

    def get_fn(backend: Any, name: str) -> Any:
        fn = backend.functions.get(name)
        if fn is None:
            raise no_such_function(name)
        if not hasattr(fn, "live"):
            fn.live = None  # (code, config, etag, last modified) once published
        return fn

    def associated_arns(backend: Any) -> set[str]:
        arns: set[str] = set()
        for dist in backend.distributions.values():
            config = dist.distribution_config
            behaviours = [config.DefaultCacheBehavior] + list((config.CacheBehaviors or {}).get("Items") or [])
            for b in behaviours:
                for item in _items((getattr(b, "function_associations", None) or {}).get("Items")):
                    arns.add(item.get("FunctionARN", ""))
        return arns

    def summary(fn: Any, stage: str) -> dict[str, Any]:
        if stage == "LIVE":
            _, config, _, modified = fn.live
            status = "DEPLOYED"
        else:
            config, modified = fn.config, fn.last_modified_time
            status = "UNPUBLISHED" if fn.live is None or fn.live[0] != fn.code else "UNASSOCIATED"
        return {
            "Name": fn.name,
            "Status": status,
            "FunctionConfig": config,
            "FunctionMetadata": {"FunctionARN": fn.arn, "Stage": stage, "CreatedTime": fn.created_time,
                                 "LastModifiedTime": modified},
        }

    def stage_of(self: Any, name: str) -> tuple[Any, str]:
        fn = get_fn(self.backend, name)
        stage = self._get_param("Stage") or "DEVELOPMENT"
        if stage == "LIVE" and fn.live is None:
            raise no_such_function(name)
        return fn, stage

    def describe_function(self: Any) -> Any:
        fn, stage = stage_of(self, self._get_param("Name"))
        etag = fn.live[2] if stage == "LIVE" else fn.etag
        return ActionResult({"FunctionSummary": summary(fn, stage), "ETag": etag})

    def get_function(self: Any) -> Any:
        fn, stage = stage_of(self, self._get_param("Name"))
        code, etag = (fn.live[0], fn.live[2]) if stage == "LIVE" else (fn.code, fn.etag)
        return ActionResult({"FunctionCode": code, "ETag": etag, "ContentType": "application/octet-stream"})

    def update_function(self: Any) -> Any:
        fn = get_fn(self.backend, self._get_param("Name"))
        _check_if_match(self._get_param("IfMatch"), fn.etag)
        fn.config = self._get_param("FunctionConfig", {}) or fn.config
        fn.code = self._get_param("FunctionCode")
        fn.last_modified_time = utcnow()
        fn.etag = _new_etag()
        # The SDK model names the header "ETtag" (sic) for this operation.
        return ActionResult({"FunctionSummary": summary(fn, "DEVELOPMENT"), "ETag": fn.etag})

    def publish_function(self: Any) -> Any:
        fn = get_fn(self.backend, self._get_param("Name"))
        _check_if_match(self._get_param("IfMatch"), fn.etag)
        fn.live = (fn.code, dict(fn.config), _new_etag(), utcnow())
        return ActionResult({"FunctionSummary": summary(fn, "LIVE")})

    def delete_function(self: Any) -> Any:
        fn = get_fn(self.backend, self._get_param("Name"))
        _check_if_match(self._get_param("IfMatch"), fn.etag)
        if fn.arn in associated_arns(self.backend):
            raise _cf_error("FunctionInUse", f"Cannot delete function {fn.name}: a distribution uses it.")
        del self.backend.functions[fn.name]
        return EmptyResult()

    for f in (describe_function, get_function, update_function, publish_function, delete_function):
        setattr(CloudFrontResponse, f.__name__, f)

    def keep_associations(original: Callable[..., Any]) -> Callable[..., Any]:
        def __init__(self: Any, config: dict[str, Any]) -> None:
            original(self, config)
            sent = config.get("FunctionAssociations")
            if sent:
                items = _items(sent.get("Items"))
                self.function_associations = {"Quantity": len(items), "Items": items} if items else {"Quantity": 0}

        return __init__

    _wrap(cf.DefaultCacheBehaviour, "__init__", keep_associations)
    _wrap(cf.CacheBehaviour, "__init__", keep_associations)

    def check_associations(backend: Any, config: dict[str, Any]) -> None:
        behaviours = [config.get("DefaultCacheBehavior") or {}]
        behaviours += _items(((config.get("CacheBehaviors") or {}).get("Items")))
        live = {fn.arn for fn in backend.functions.values() if getattr(fn, "live", None) is not None}
        for b in behaviours:
            for item in _items(((b.get("FunctionAssociations") or {}).get("Items"))):
                if item.get("FunctionARN") not in live or item.get("EventType") not in ("viewer-request",
                                                                                     "viewer-response"):
                    raise _cf_error("InvalidFunctionAssociation",
                                    f"The function association is invalid: {item.get('FunctionARN')} "
                                    f"({item.get('EventType')}) is not a published function for a viewer event.")

    def make_create(original: Callable[..., Any]) -> Callable[..., Any]:
        def create_distribution_with_tags(self: Any, distribution_config: dict[str, Any], tags: Any) -> Any:
            check_associations(self, distribution_config)
            return original(self, distribution_config, tags)

        return create_distribution_with_tags

    _wrap(cf.CloudFrontBackend, "create_distribution_with_tags", make_create)

    def make_update(original: Callable[..., Any]) -> Callable[..., Any]:
        def update_distribution(self: Any, dist_config: Any, _id: str, if_match: Any) -> Any:
            check_associations(self, dist_config or {})
            return original(self, dist_config=dist_config, _id=_id, if_match=if_match)

        return update_distribution

    _wrap(cf.CloudFrontBackend, "update_distribution", make_update)


def _items(value: Any) -> list[Any]:
    """An XML list as moto's parser hands it over: a list, one dict, or a dict wrapping the list."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and len(value) == 1:
        inner = next(iter(value.values()))
        if isinstance(inner, list):
            return inner
        if isinstance(inner, dict):
            return [inner]
    return [value]


# AWS's managed CachingOptimized policy (same id in every account), as GetCachePolicy returns it.
CACHING_OPTIMIZED_ID = "658327ea-f89d-4fab-a63d-7e88639e58f6"
_CACHING_OPTIMIZED_CONFIG = {
    "Comment": "Policy with caching enabled. Supports Gzip and Brotli compression.",
    "Name": "Managed-CachingOptimized", "MinTTL": 1, "DefaultTTL": 86400, "MaxTTL": 31536000,
    "ParametersInCacheKeyAndForwardedToOrigin": {
        "EnableAcceptEncodingGzip": True, "EnableAcceptEncodingBrotli": True,
        "HeadersConfig": {"HeaderBehavior": "none"}, "CookiesConfig": {"CookieBehavior": "none"},
        "QueryStringsConfig": {"QueryStringBehavior": "none"}},
}


class _CachePolicy:
    def __init__(self, policy_id: str, config: dict[str, Any], managed: bool = False) -> None:
        from moto.core.utils import utcnow

        self.id, self.config, self.managed = policy_id, config, managed
        self.etag = _new_etag()
        self.last_modified = utcnow()

    def view(self) -> dict[str, Any]:
        return {"Id": self.id, "LastModifiedTime": self.last_modified, "CachePolicyConfig": self.config}


def _cache_policies(backend: Any) -> dict[str, _CachePolicy]:
    """The backend's cache policies (managed CachingOptimized included); reset with the backend."""
    policies = backend.__dict__.get("_imagestack_cache_policies")
    if policies is None:
        managed = _CachePolicy(CACHING_OPTIMIZED_ID, dict(_CACHING_OPTIMIZED_CONFIG), managed=True)
        policies = backend.__dict__["_imagestack_cache_policies"] = {managed.id: managed}
    return policies


def _behaviours(config: Any) -> list[Any]:
    """The cache behaviours of a distribution config (request dict or moto's DistributionConfig)."""
    get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
    out = [get("DefaultCacheBehavior")]
    out += list((get("CacheBehaviors") or {}).get("Items") or [])
    return [b for b in out if b is not None]


def _policy_id_of(behaviour: Any) -> str:
    if isinstance(behaviour, dict):
        return behaviour.get("CachePolicyId") or ""
    return getattr(behaviour, "cache_policy_id", "") or ""


@_patch("cloudfront-cache-policies")
def _cloudfront_cache_policies() -> None:
    """CloudFront cache policies.
    AWS: Create/Get/GetConfig/List/Update/DeleteCachePolicy (2020-05-31/cache-policy[/{Id}[/config]]).
      ListCachePolicies lists AWS's managed policies (Managed-CachingOptimized, id 658327ea-...) with
      Type=managed or no Type, the account's own with Type=custom or no Type. Create returns an ETag;
      Update/Delete need the current one as IfMatch (InvalidIfMatchVersion 400 / PreconditionFailed
      412) and Update returns a new one; a taken name -> CachePolicyAlreadyExists (409); unknown id
      -> NoSuchCachePolicy (404); deleting a policy a distribution's behaviour uses ->
      CachePolicyInUse (409); updating or deleting a managed policy -> IllegalUpdate/IllegalDelete
      (400). Create/UpdateDistribution with a behaviour whose CachePolicyId does not exist ->
      NoSuchCachePolicy (404).
    moto 5.2.5: none of the cache-policy API exists (no URL route: 404 for every call, measured);
      any CachePolicyId is accepted on a behaviour (stored and returned as sent).
    Patch: the six calls on a per-backend store seeded with Managed-CachingOptimized, the checks
      above, and CachePolicyId validation on Create/UpdateDistribution."""
    from moto.cloudfront import models as cf
    from moto.cloudfront import urls
    from moto.cloudfront.responses import CloudFrontResponse
    from moto.core.responses import ActionResult, EmptyResult

    urls.url_paths.update({
        "{0}/2020-05-31/cache-policy$": CloudFrontResponse.dispatch,
        "{0}/2020-05-31/cache-policy/(?P<cache_policy_id>[^/]+)$": CloudFrontResponse.dispatch,
        "{0}/2020-05-31/cache-policy/(?P<cache_policy_id>[^/]+)/config$": CloudFrontResponse.dispatch,
    })

    def policy(self: Any) -> _CachePolicy:
        found = _cache_policies(self.backend).get(self._get_param("Id") or "")
        if found is None:
            raise _cf_error("NoSuchCachePolicy", "The cache policy does not exist.")
        return found

    def name_taken(self: Any, name: str, other_than: str = "") -> None:
        if any(p.config.get("Name") == name and p.id != other_than for p in _cache_policies(self.backend).values()):
            raise _cf_error("CachePolicyAlreadyExists", f"A cache policy with name {name} already exists.")

    def create_cache_policy(self: Any) -> Any:
        config = self._get_param("CachePolicyConfig", {})
        name_taken(self, config.get("Name"))
        created = _CachePolicy(str(uuid.uuid4()), config)
        _cache_policies(self.backend)[created.id] = created
        return ActionResult({"CachePolicy": created.view(), "ETag": created.etag,
                             "Location": f"https://cloudfront.amazonaws.com/2020-05-31/cache-policy/{created.id}"})

    def get_cache_policy(self: Any) -> Any:
        found = policy(self)
        return ActionResult({"CachePolicy": found.view(), "ETag": found.etag})

    def get_cache_policy_config(self: Any) -> Any:
        found = policy(self)
        return ActionResult({"CachePolicyConfig": found.config, "ETag": found.etag})

    def list_cache_policies(self: Any) -> Any:
        kind = self._get_param("Type")
        items = [{"Type": "managed" if p.managed else "custom", "CachePolicy": p.view()}
                 for p in _cache_policies(self.backend).values()
                 if kind in (None, "", "managed" if p.managed else "custom")]
        return ActionResult({"CachePolicyList": {"MaxItems": 100, "Quantity": len(items), "Items": items}})

    def update_cache_policy(self: Any) -> Any:
        from moto.core.utils import utcnow

        found = policy(self)
        if found.managed:
            raise _cf_error("IllegalUpdate", "A managed cache policy cannot be updated.")
        _check_if_match(self._get_param("IfMatch"), found.etag)
        config = self._get_param("CachePolicyConfig", {})
        name_taken(self, config.get("Name"), other_than=found.id)
        found.config, found.etag, found.last_modified = config, _new_etag(), utcnow()
        return ActionResult({"CachePolicy": found.view(), "ETag": found.etag})

    def delete_cache_policy(self: Any) -> Any:
        found = policy(self)
        if found.managed:
            raise _cf_error("IllegalDelete", "A managed cache policy cannot be deleted.")
        _check_if_match(self._get_param("IfMatch"), found.etag)
        for dist in self.backend.distributions.values():
            if any(_policy_id_of(b) == found.id for b in _behaviours(dist.distribution_config)):
                raise _cf_error("CachePolicyInUse", f"The cache policy is in use by distribution {dist.id}.")
        del _cache_policies(self.backend)[found.id]
        return EmptyResult()

    for fn in (create_cache_policy, get_cache_policy, get_cache_policy_config, list_cache_policies,
               update_cache_policy, delete_cache_policy):
        setattr(CloudFrontResponse, fn.__name__, fn)

    def check_policies(backend: Any, config: dict[str, Any]) -> None:
        known = _cache_policies(backend)
        for b in _behaviours(config):
            pid = _policy_id_of(b)
            if pid and pid not in known:
                raise _cf_error("NoSuchCachePolicy", f"The cache policy {pid} does not exist.")

    def make_create(original: Callable[..., Any]) -> Callable[..., Any]:
        def create(self: Any, distribution_config: dict[str, Any], tags: list[dict[str, str]]) -> Any:
            check_policies(self, distribution_config)
            return original(self, distribution_config=distribution_config, tags=tags)

        return create

    _wrap(cf.CloudFrontBackend, "create_distribution_with_tags", make_create)

    def make_update(original: Callable[..., Any]) -> Callable[..., Any]:
        def update_distribution(self: Any, dist_config: Any, _id: str, if_match: Any) -> Any:
            check_policies(self, dist_config)
            return original(self, dist_config=dist_config, _id=_id, if_match=if_match)

        return update_distribution

    _wrap(cf.CloudFrontBackend, "update_distribution", make_update)


# =================================================================================================
# Lambda, DynamoDB, IAM
# =================================================================================================


@_patch("lambda-add-permission-duplicate-sid")
def _lambda_duplicate_sid() -> None:
    """Lambda AddPermission.
    AWS: a StatementId already in the function's policy fails with ResourceConflictException (409)
      "The statement id (...) provided already exists".
    moto 5.2.5: appends a second statement with the same Sid (measured); RemovePermission then
      removes only one of them, so a remove+add update leaves the old statement behind.
    Patch: raise the AWS error on a duplicate Sid."""
    from moto.awslambda.exceptions import LambdaClientError
    from moto.awslambda.policy import Policy

    class ResourceConflict(LambdaClientError):
        code = 409

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def add_statement(self: Any, raw: str, qualifier: str | None = None) -> Any:
            sid = json.loads(raw).get("StatementId")
            if sid is not None and any(s.get("Sid") == sid for s in self.statements):
                raise ResourceConflict(
                    "ResourceConflictException",
                    f"The statement id ({sid}) provided already exists. Please provide a new "
                    "statement id, or remove the existing statement.",
                )
            return original(self, raw, qualifier)

        return add_statement

    _wrap(Policy, "add_statement", make)


@_patch("dynamodb-update-table-sse")
def _dynamodb_update_sse() -> None:
    """DynamoDB UpdateTable SSESpecification.
    AWS: UpdateTable with SSESpecification {Enabled: true, SSEType: KMS[, KMSMasterKeyId]} switches
      the table to KMS encryption (DescribeTable then shows SSEDescription); Enabled: false goes
      back to the AWS owned key (no SSEDescription).
    moto 5.2.5: UpdateTable ignores SSESpecification (measured: SSEDescription stays absent), so
      an operator converging a table's encryption would update it on every reconcile.
    Patch: apply SSESpecification on UpdateTable the way CreateTable does."""
    from moto.dynamodb.responses import DynamoHandler

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def update_table(self: Any) -> Any:
            sse = self.body.get("SSESpecification")
            result = original(self)
            if sse is not None:
                table = self.dynamodb_backend.get_table(self.body["TableName"])
                if sse.get("Enabled"):
                    spec = dict(sse)
                    if "KMSMasterKeyId" not in spec:
                        spec["KMSMasterKeyId"] = table._get_default_encryption_key(
                            self.dynamodb_backend.account_id, self.dynamodb_backend.region_name)
                    table.sse_specification = spec
                else:
                    table.sse_specification = None
                result = type(result)(table.describe())
            return result

        return update_table

    _wrap(DynamoHandler, "update_table", make)



@_patch("s3-create-bucket-tags")
def _s3_create_bucket_tags() -> None:
    """CreateBucket with tags.
    AWS: CreateBucket accepts `CreateBucketConfiguration.Tags` and the new bucket carries those
      tags from its first moment (GetBucketTagging returns them) — the operator relies on this so
      that a crash right after CreateBucket never leaves an untagged bucket it would then refuse
      to adopt as its own.
    moto 5.2.5: the Tags element is ignored (measured: GetBucketTagging -> NoSuchTagSet).
    Patch: after a successful CreateBucket, apply the Tags of the request body to the new bucket
      when it has no tags yet."""
    import xmltodict
    from moto.s3.responses import S3Response

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def _bucket_response_put(self: Any, request: Any, bucket_name: str, querystring: Any) -> Any:
            result = original(self, request, bucket_name, querystring)
            if querystring or not self.body:
                return result
            try:
                cfg = xmltodict.parse(self.body).get("CreateBucketConfiguration") or {}
            except Exception:  # not XML: nothing to do
                return result
            tags = (cfg.get("Tags") or {}).get("Tag") or []
            if isinstance(tags, dict):
                tags = [tags]
            if tags and not self.backend.get_bucket_tagging(bucket_name).get("Tags"):
                self.backend.put_bucket_tagging(
                    bucket_name, {t["Key"]: t.get("Value") or "" for t in tags})
            return result

        return _bucket_response_put

    _wrap(S3Response, "_bucket_response_put", make)


@_patch("s3-empty-get-root-elements")
def _s3_empty_get_root_elements() -> None:
    """Root element of GetBucketVersioning / GetBucketAccelerateConfiguration /
    GetBucketNotificationConfiguration on a bucket where the setting was never configured.
    AWS: answers `<VersioningConfiguration xmlns="…"/>`, `<AccelerateConfiguration xmlns="…"/>`
      and `<NotificationConfiguration xmlns="…"/>` (empty).
    moto 5.2.5: answers `<GetBucketVersioningResponse …/>`, `<GetBucketAccelerateConfigurationResponse
      …/>`, `<GetBucketNotificationResponse …/>` (measured); boto3 ignores the root name, but aws-sdk-rust checks it and fails to parse
      the response (error code "Unknown"), so a fresh bucket can never be observed.
    Patch: rename those empty root elements to the ones AWS sends."""
    from moto.s3.responses import S3Response

    renames = {
        "get_bucket_versioning": ("GetBucketVersioningResponse", "VersioningConfiguration"),
        "get_bucket_accelerate_configuration": (
            "GetBucketAccelerateConfigurationResponse", "AccelerateConfiguration"),
        "get_bucket_notification": ("GetBucketNotificationResponse", "NotificationConfiguration"),
    }

    def make_for(wrong: str, right: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def make(original: Callable[..., Any]) -> Callable[..., Any]:
            def handler(self: Any, *args: Any, **kwargs: Any) -> Any:
                status, headers, body = original(self, *args, **kwargs)
                if isinstance(body, bytes):
                    body = body.replace(wrong.encode(), right.encode())
                elif isinstance(body, str):
                    body = body.replace(wrong, right)
                return status, headers, body

            return handler

        return make

    for attr, (wrong, right) in renames.items():
        _wrap(S3Response, attr, make_for(wrong, right))


@_patch("lambda-log-timestamps-integer")
def _lambda_log_timestamps_integer() -> None:
    """Timestamps of the log events moto writes for a Lambda invocation.
    AWS: CloudWatch Logs event timestamps are integers (milliseconds since the epoch, a `long`).
    moto 5.2.5: LambdaFunction.save_logs stores `unix_time_millis()`, a float
      (measured: `"timestamp": 1795849952549.061` in FilterLogEvents), which aws-sdk-rust refuses
      to parse (DeserializeError InvalidNumber) — so the invocation attempt moto records when an S3
      notification fires (it cannot run the code without Docker) is unreadable from Rust.
    Patch: the same save_logs with integer timestamps."""
    from moto.awslambda.models import LambdaFunction
    from moto.core.utils import unix_time_millis, utcnow
    from moto.moto_api._internal import mock_random as random

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def save_logs(self: Any, output: str) -> None:
            invoke_id = random.uuid4().hex
            date = utcnow()
            stream = f"{date.year}/{date.month:02d}/{date.day:02d}/[{self.version}]{invoke_id}"
            self.logs_backend.create_log_stream(self.logs_group_name, stream)
            events = [{"timestamp": int(unix_time_millis()), "message": line} for line in output.splitlines()]
            self.logs_backend.put_log_events(self.logs_group_name, stream, events)

        return save_logs

    _wrap(LambdaFunction, "save_logs", make)


@_patch("lambda-get-function-reserved-concurrency-zero")
def _lambda_reserved_concurrency_zero() -> None:
    """Lambda GetFunction's `Concurrency`.
    AWS: after PutFunctionConcurrency, GetFunction returns
      `Concurrency: {ReservedConcurrentExecutions: N}`, also for N = 0 (a function that must not
      run at all; the documented way to stop a runaway function).
    moto 5.2.5: LambdaFunction.get_code adds `Concurrency` only `if self.reserved_concurrency:`
      (measured: after PutFunctionConcurrency 0, GetFunction has no `Concurrency`, while
      GetFunctionConcurrency says 0), so a reservation of 0 reads as "unreserved" and an
      operator converging it would write it again on every reconcile.
    Patch: add `Concurrency` whenever a reservation is set (not None)."""
    from moto.awslambda.models import LambdaFunction

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def get_code(self: Any) -> dict[str, Any]:
            resp = original(self)
            if self.reserved_concurrency is not None and "Concurrency" not in resp:
                resp["Concurrency"] = {"ReservedConcurrentExecutions": int(self.reserved_concurrency)}
            return resp

        return get_code

    _wrap(LambdaFunction, "get_code", make)


# =================================================================================================
# IAM enforcement of identity policies (only when enforcement is on: INITIAL_NO_AUTH_ACTION_COUNT,
# or POST /moto-api/reset-auth with a number; off by default, so this changes nothing otherwise)
# =================================================================================================


def evaluate_identity_policies(documents: list[dict[str, Any]], action: str, resource: str,
                               context: dict[str, list[str]]) -> str:
    """Identity-policy evaluation (no Principal element): "Deny" if an applicable statement of any
    document denies, else "Allow" if one allows, else "Neutral" (= implicit deny)."""
    decision = "Neutral"
    for doc in documents:
        statements = doc.get("Statement", [])
        if isinstance(statements, dict):
            statements = [statements]
        for st in statements:
            one = dict(st, Principal="*")
            one.pop("NotPrincipal", None)
            result = evaluate_policy({"Statement": [one]}, action, resource, None, context)
            if result == "Deny":
                return "Deny"
            if result == "Allow":
                decision = "Allow"
    return decision


# IAM service prefix of a SigV4 signing name, where they differ.
_IAM_PREFIX = {"monitoring": "cloudwatch"}
# IAM action of an API operation, where the names differ.
_IAM_ACTION = {
    "lambda:Invoke": ["lambda:InvokeFunction"],
    "lambda:InvokeAsync": ["lambda:InvokeFunction"],
    "cloudfront:CreateDistributionWithTags": ["cloudfront:CreateDistribution", "cloudfront:TagResource"],
}
# Request values that are ARNs of the resource the action is on.
_ARN_PARAMS = ("ResourceArn", "ResourceARN", "resourceArn", "Resource", "ARN")


def _params(resp: Any) -> dict[str, Any]:
    """The request's parameters however moto parsed them (automatic parsing, JSON body, query
    string), plus the URI's path parameters."""
    out: dict[str, Any] = {}
    try:
        if isinstance(resp.body, (str, bytes)) and resp.body and str(
                resp.headers.get("Content-Type", "")).find("json") >= 0:
            body = json.loads(resp.body)
            if isinstance(body, dict):
                out.update(body)
    except ValueError:
        pass
    for key, values in (getattr(resp, "querystring", None) or {}).items():
        out.setdefault(key, values[0] if isinstance(values, list) and len(values) == 1 else values)
    params = getattr(resp, "params", None)
    if isinstance(params, dict):
        out.update(params)
    out.update(getattr(resp, "uri_match", None) or {})
    return out


def _str_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def _member_list(params: dict[str, Any], name: str) -> list[str]:
    """A list parameter from any protocol: Name (JSON/CBOR/parsed), Name.member.N (query)."""
    if name in params:
        return _str_list(params[name])
    return [str(v) for k, v in sorted(params.items()) if k.startswith(f"{name}.member.")]


def _iam_checks(resp: Any, service: str, op: str, region: str, account: str, partition: str
                ) -> list[tuple[str, str, dict[str, list[str]]]]:
    """What the real service authorises for this request: a list of (IAM action, resource ARN,
    condition context). The resource is the ARN AWS's Service Authorization Reference names for
    the action ("*" where the action has no resource-level permission)."""
    from urllib.parse import unquote

    p, r, a = partition, region, account
    prefix = _IAM_PREFIX.get(service, service)
    actions = _IAM_ACTION.get(f"{prefix}:{op}", [f"{prefix}:{op}"])
    params = _params(resp)
    arn_param = next((str(params[k]) for k in _ARN_PARAMS if params.get(k)), None)
    resources: list[str] = ["*"]
    extra: list[tuple[str, str, dict[str, list[str]]]] = []

    if prefix == "dynamodb":
        if params.get("TableName"):
            resources = [f"arn:{p}:dynamodb:{r}:{a}:table/{params['TableName']}"]
        elif arn_param:
            resources = [arn_param]
    elif prefix == "iam":
        from moto.iam.models import iam_backends

        if params.get("RoleName"):
            name = str(params["RoleName"])
            try:
                resources = [iam_backends[a][p].get_role(name).arn]
            except Exception:  # not created yet
                resources = [f"arn:{p}:iam::{a}:role{params.get('Path') or '/'}{name}"]
        elif params.get("UserName"):
            resources = [f"arn:{p}:iam::{a}:user/{params['UserName']}"]
        elif params.get("PolicyArn"):
            resources = [str(params["PolicyArn"])]
    elif prefix == "lambda":
        name = unquote(str(params.get("FunctionName") or ""))
        if arn_param:
            resources = [unquote(arn_param)]
        elif name.startswith("arn:"):
            resources = [name]
        elif name:
            resources = [f"arn:{p}:lambda:{r}:{a}:function:{name}"]
        if op in ("CreateFunction", "UpdateFunctionConfiguration") and params.get("Role"):
            # Giving the function a role passes the role to Lambda.
            extra.append(("iam:PassRole", str(params["Role"]),
                          {"iam:passedtoservice": ["lambda.amazonaws.com"]}))
    elif prefix == "sqs":
        url = str(params.get("QueueUrl") or "")
        name = str(params.get("QueueName") or url.rstrip("/").split("/")[-1])
        if name:
            resources = [f"arn:{p}:sqs:{r}:{a}:{name}"]
    elif prefix == "logs":
        if params.get("resourceArn"):
            resources = [str(params["resourceArn"])]
        elif params.get("logGroupName"):
            resources = [f"arn:{p}:logs:{r}:{a}:log-group:{params['logGroupName']}"]
        elif op == "DescribeLogGroups":  # authorised on the account's log groups
            resources = [f"arn:{p}:logs:{r}:{a}:log-group:*"]
    elif prefix == "cloudwatch":
        alarms = _member_list(params, "AlarmNames") or _str_list(params.get("AlarmName"))
        dashboards = _member_list(params, "DashboardNames") or _str_list(params.get("DashboardName"))
        if arn_param:
            resources = [arn_param]
        elif alarms:
            resources = [f"arn:{p}:cloudwatch:{r}:{a}:alarm:{n}" for n in alarms]
        elif dashboards:
            resources = [f"arn:{p}:cloudwatch::{a}:dashboard/{n}" for n in dashboards]
        elif op == "DescribeAlarms":  # no names: every alarm (with a prefix: the alarms it selects)
            resources = [f"arn:{p}:cloudwatch:{r}:{a}:alarm:{params.get('AlarmNamePrefix') or ''}*"]
    elif prefix == "cloudfront":
        # /2020-05-31/<resource type>[/<id>[/...]]: the path names the IAM resource type.
        parts = [s for s in resp.path.split("?")[0].split("/") if s][1:]
        if parts and parts[0] == "tagging":
            resources = [unquote(str(params.get("Resource") or "*"))]
        elif len(parts) >= 2:
            # function/<name>[/describe|/publish|/test], cache-policy/<id>, distribution/<id>/config
            resources = [f"arn:{p}:cloudfront::{a}:{parts[0]}/{unquote(parts[1])}"]
        elif parts == ["function"] and resp.method == "POST":
            # CreateFunction: a function's ARN is its name, which the request body gives.
            body = resp.body.decode("utf-8", "replace") if isinstance(resp.body, bytes) else str(resp.body or "")
            name = re.search(r"<Name>([^<]*)</Name>", body)
            resources = [f"arn:{p}:cloudfront::{a}:function/{name.group(1) if name else '*'}"]
        elif parts and resp.method == "POST":  # create: the new resource's id is not known yet
            resources = [f"arn:{p}:cloudfront::{a}:{parts[0]}/*"]
    out = [(act, res, {}) for act in actions for res in resources]
    # Tag on create: the tags are authorised as the service's tagging action on the new resource
    # (IAM CreateRole: iam:TagRole; Lambda: "lambda:TagResource ... to call TagResource or
    # perform a tag on create"; SQS CreateQueue: sqs:TagQueue; CloudWatch PutMetricAlarm:
    # cloudwatch:TagResource). Lambda GetFunction of a tagged function also needs
    # lambda:ListTags (its response carries the tags).
    tag_action = {"iam:CreateRole": "iam:TagRole", "lambda:CreateFunction": "lambda:TagResource",
                  "sqs:CreateQueue": "sqs:TagQueue",
                  "cloudwatch:PutMetricAlarm": "cloudwatch:TagResource"}.get(f"{prefix}:{op}")
    if tag_action and any(_has_param(params, k) for k in ("Tags", "tags", "Tag")):
        out += [(tag_action, res, {}) for res in resources]
    if f"{prefix}:{op}" == "lambda:GetFunction" and resources != ["*"]:
        from moto.awslambda.models import lambda_backends

        try:
            fn = unquote(str(params.get("FunctionName") or ""))
            tagged = bool(lambda_backends[a][r].get_function(fn).tags)
        except Exception:  # no such function: GetFunction answers 404
            tagged = False
        if tagged:
            out += [("lambda:ListTags", res, {}) for res in resources]
    return out + extra


def _has_param(params: dict[str, Any], name: str) -> bool:
    """Is list/map parameter `name` given and not empty (JSON: Name; query: Name.member.N..., Name.N...)?"""
    return bool(params.get(name)) or any(k.startswith(f"{name}.") for k in params)


class _AccessDenied(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _denied_message(user_arn: str, action: str, resource: str, decision: str) -> str:
    why = ("with an explicit deny in an identity-based policy" if decision == "Deny"
           else f"because no identity-based policy allows the {action} action")
    return f"User: {user_arn} is not authorized to perform: {action} on resource: {resource} {why}"


def _authorize(iam_request: Any, checks: list[tuple[str, str, dict[str, list[str]]]]) -> None:
    """Raise _AccessDenied for the first check the caller's identity policies do not allow."""
    from moto.iam.access_control import IAMPolicy

    docs = [IAMPolicy(policy)._policy_json for policy in iam_request._access_key.collect_policies()]
    for action, resource, context in checks:
        decision = evaluate_identity_policies(docs, action, resource, context)
        if decision != "Allow":
            # In the server log: which check denied (the client may not show the message).
            print(f"iam-enforcement: {iam_request._access_key.arn} denied {action} on {resource}"
                  f" ({decision}; request {iam_request._action})", file=sys.stderr, flush=True)
            raise _AccessDenied("AccessDenied",
                                _denied_message(iam_request._access_key.arn, action, resource, decision))


@_patch("iam-enforcement-actions-and-resources")
def _iam_enforcement() -> None:
    """IAM enforcement (identity policies) when it is switched on (INITIAL_NO_AUTH_ACTION_COUNT;
    POST /moto-api/reset-auth). Off by default: then nothing here runs.
    AWS: each request is authorised for the IAM action(s) the operation needs, on the ARN of the
      resource it acts on, with condition keys: CreateFunction/UpdateFunctionConfiguration with a
      Role also need iam:PassRole on that role with iam:PassedToService=lambda.amazonaws.com;
      CloudWatch's actions are `cloudwatch:*` (its signing name is `monitoring`); S3's action
      names are the IAM ones (HeadBucket = s3:ListBucket, PutBucketEncryption =
      s3:PutEncryptionConfiguration, DeleteObjects = s3:DeleteObject per key, ...); tags given
      to a create call also need the service's tagging action (iam:TagRole, lambda:TagResource,
      sqs:TagQueue, cloudwatch:TagResource), Lambda GetFunction of a tagged function also
      lambda:ListTags. A denial names the action and the resource.
    moto 5.2.5 (moto/core/authorization.py, moto/iam/access_control.py): the action is
      `<signing name>:<operation>` and the resource is "*" except for SQS (the queue's ARN once
      it exists) and IAM role calls (the role's ARN once it exists) — so a policy scoped to
      resource ARNs denies almost everything (measured: DynamoDB CreateTable with Allow on
      table/imagestack-* is AccessDenied), CloudWatch needs `monitoring:*` actions, conditions get
      no request values, iam:PassRole is never checked, and S3's action table is wrong for
      HeadBucket, Get/PutBucketEncryption, OwnershipControls, PublicAccessBlock (PUT of an
      unlisted sub-resource counts as s3:CreateBucket). Errors of JSON services are XML bodies.
      A form post (IAM, CloudWatch) is signature-checked over moto's re-encoding of its parsed
      form (`+` for a space): aws-sdk-rust sends `%20`, so its calls were SignatureDoesNotMatch.
    Patch: with enforcement on, requests to DynamoDB, IAM, Lambda, SQS, Logs, CloudWatch and
      CloudFront are authorised by _iam_checks() (action + resource ARN + iam:PassedToService) and
      S3 requests by _s3_iam_checks(), evaluated with evaluate_identity_policies() (the same
      evaluator as bucket policies; the caller's user/role inline, attached and group policies
      as moto collects them); a denial is the service's own AccessDenied error in its protocol,
      with AWS's message. Other services keep moto's check. sts:GetCallerIdentity is always
      allowed, as on AWS."""
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.core.exceptions import ServiceException
    from moto.core.responses import ActionResult, BaseResponse
    from moto.iam.access_control import IAMRequest, S3IAMRequest
    from moto.s3.exceptions import S3ClientError
    from moto.utilities.utils import get_partition

    modelled = {"dynamodb", "iam", "lambda", "sqs", "logs", "monitoring", "cloudfront"}
    json_services = {"dynamodb", "lambda", "logs"}

    def make_iam_request(self: Any, cls: type) -> Any:
        from urllib.parse import urlparse

        parsed_url = urlparse(self.uri)
        path = self.raw_path + ("?" + parsed_url.query if parsed_url.query else "")
        # The signature covers the body as sent: a request without a body signs an empty payload
        # (moto passes its parsed parameters instead, so every bodiless request of a REST
        # service, GetFunction say, fails with SignatureDoesNotMatch). A form post (query
        # protocol: IAM, CloudWatch) is checked over its body as sent, kept by setup_class
        # below (moto re-encodes its parsed form instead: Python's encoding of the values,
        # `+` for a space, which matches what botocore sent but not what aws-sdk-rust sends,
        # `%20`, so every Rust IAM/CloudWatch call with a space in a value was
        # SignatureDoesNotMatch). S3 keeps moto's data (its errors read BucketName; S3 signs
        # x-amz-content-sha256, not the body).
        form = "x-www-form-urlencoded" in str(self.headers.get("Content-Type", ""))
        signed_form = getattr(self, "_imagestack_signed_form_body", None)
        bodiless = not self.raw_body and not form
        data = {} if bodiless and cls is not S3IAMRequest else self.data
        return cls(account_id=self.current_account, method=self.method, path=path, data=data,
                   body=signed_form or self.raw_body, headers=self.headers,
                   action=self._get_action())

    def enforcing() -> bool:
        if ActionAuthenticatorMixin.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT:
            return True
        ActionAuthenticatorMixin.request_count += 1
        return False

    def normal(self: Any, resource: str = "*") -> None:
        if not enforcing():
            return
        if self.headers.get("X-Amz-Target") in ActionAuthenticatorMixin.PUBLIC_OPERATIONS:
            return
        iam_request = make_iam_request(self, IAMRequest)
        service = iam_request._service
        if service not in modelled:
            iam_request.check_signature()  # moto's own check
            iam_request.check_action_permitted(resource)
            return
        iam_request.check_signature()
        op = iam_request._action.split(":", 1)[1]
        checks = _iam_checks(self, service, op, iam_request._region, self.current_account,
                             get_partition(iam_request._region))
        try:
            _authorize(iam_request, checks)
        except _AccessDenied as e:
            e.code = "AccessDeniedException" if service in json_services else "AccessDenied"
            raise

    ActionAuthenticatorMixin._authenticate_and_authorize_normal_action = normal

    def make_setup_class(original: Callable[..., Any]) -> Callable[..., Any]:
        def setup_class(self: Any, request: Any, *args: Any, **kwargs: Any) -> None:
            # Only when enforcement is configured (moto's default is "never": then nothing
            # changes). Reading the data before the form is parsed caches it (werkzeug then
            # parses the form from the cache); moto's own view of the request is restored.
            raw = None
            if (settings.INITIAL_NO_AUTH_ACTION_COUNT != float("inf")
                    and str(request.headers.get("Content-Type", "")).startswith(
                        "application/x-www-form-urlencoded")
                    and "form" not in request.__dict__):
                raw = request.get_data(cache=True)
            original(self, request, *args, **kwargs)
            if raw:
                self._imagestack_signed_form_body = raw
                if self.raw_body == raw:  # moto saw no body for a form post: keep it so
                    self.raw_body, self.body = b"", ""

        return setup_class

    _wrap(BaseResponse, "setup_class", make_setup_class)

    def s3_auth(self: Any, bucket_name: str | None = None, key_name: str | None = None) -> None:
        if not enforcing():
            return
        iam_request = make_iam_request(self, S3IAMRequest)
        iam_request.check_signature()
        partition = get_partition(self.region)
        try:
            _authorize(iam_request, _s3_iam_checks(self, bucket_name, key_name, partition))
        except _AccessDenied as e:
            raise S3ClientError("AccessDenied", e.message, code=403) from None

    ActionAuthenticatorMixin._authenticate_and_authorize_s3_action = s3_auth

    class AccessDenied(ServiceException):
        pass

    def make_call_action(original: Callable[..., Any]) -> Callable[..., Any]:
        def call_action(self: Any) -> Any:
            try:
                return original(self)
            except _AccessDenied as e:
                status, headers, body = self.serialized(ActionResult(AccessDenied(e.code, e.message)))
                headers["status"] = 403
                return 403, headers, body

        return call_action

    _wrap(BaseResponse, "call_action", make_call_action)


# S3 IAM action of a bucket (sub)resource request: (method, query key) -> action; first key found.
_S3_BUCKET_ACTIONS: dict[str, list[tuple[str, str]]] = {
    "GET": [("versioning", "GetBucketVersioning"), ("versions", "ListBucketVersions"),
            ("tagging", "GetBucketTagging"), ("policy", "GetBucketPolicy"),
            ("lifecycle", "GetLifecycleConfiguration"), ("cors", "GetBucketCORS"),
            ("publicAccessBlock", "GetBucketPublicAccessBlock"),
            ("encryption", "GetEncryptionConfiguration"),
            ("ownershipControls", "GetBucketOwnershipControls"),
            ("notification", "GetBucketNotification"), ("accelerate", "GetAccelerateConfiguration"),
            ("location", "GetBucketLocation"), ("acl", "GetBucketAcl"),
            ("website", "GetBucketWebsite"), ("logging", "GetBucketLogging"),
            ("uploads", "ListBucketMultipartUploads"), ("", "ListBucket")],
    "HEAD": [("", "ListBucket")],
    "PUT": [("versioning", "PutBucketVersioning"), ("tagging", "PutBucketTagging"),
            ("policy", "PutBucketPolicy"), ("lifecycle", "PutLifecycleConfiguration"),
            ("cors", "PutBucketCORS"), ("publicAccessBlock", "PutBucketPublicAccessBlock"),
            ("encryption", "PutEncryptionConfiguration"),
            ("ownershipControls", "PutBucketOwnershipControls"),
            ("notification", "PutBucketNotification"), ("accelerate", "PutAccelerateConfiguration"),
            ("acl", "PutBucketAcl"), ("website", "PutBucketWebsite"),
            ("logging", "PutBucketLogging"), ("", "CreateBucket")],
    "DELETE": [("tagging", "PutBucketTagging"), ("policy", "DeleteBucketPolicy"),
               ("lifecycle", "PutLifecycleConfiguration"), ("cors", "PutBucketCORS"),
               ("publicAccessBlock", "PutBucketPublicAccessBlock"),
               ("encryption", "PutEncryptionConfiguration"),
               ("ownershipControls", "PutBucketOwnershipControls"),
               ("website", "DeleteBucketWebsite"), ("", "DeleteBucket")],
}
_S3_OBJECT_ACTIONS: dict[str, list[tuple[str, str]]] = {
    "GET": [("tagging", "GetObjectTagging"), ("acl", "GetObjectAcl"),
            ("versionId", "GetObjectVersion"), ("", "GetObject")],
    "HEAD": [("versionId", "GetObjectVersion"), ("", "GetObject")],
    "PUT": [("tagging", "PutObjectTagging"), ("acl", "PutObjectAcl"), ("", "PutObject")],
    "DELETE": [("uploadId", "AbortMultipartUpload"), ("versionId", "DeleteObjectVersion"),
               ("", "DeleteObject")],
    "POST": [("", "PutObject")],
}


def _s3_iam_checks(resp: Any, bucket: str | None, key: str | None, partition: str
                   ) -> list[tuple[str, str, dict[str, list[str]]]]:
    """(IAM action, resource) pairs an S3 request needs (Service Authorization Reference)."""
    query = resp.querystring or {}
    method = resp.method
    if not bucket:
        return [("s3:ListAllMyBuckets", "*", {})]
    if key:
        table = _S3_OBJECT_ACTIONS.get(method, [("", f"{method}Object")])
        action = next(a for q, a in table if q == "" or q in query)
        return [(f"s3:{action}", f"arn:{partition}:s3:::{bucket}/{key}", {})]
    if method == "POST" and "delete" in query:  # DeleteObjects: each key's delete
        import xmltodict

        try:
            doc = xmltodict.parse(resp.body or b"").get("Delete") or {}
        except Exception:
            doc = {}
        objects = doc.get("Object") or []
        objects = [objects] if isinstance(objects, dict) else objects
        return [("s3:DeleteObjectVersion" if o.get("VersionId") else "s3:DeleteObject",
                 f"arn:{partition}:s3:::{bucket}/{o.get('Key', '')}", {}) for o in objects]
    table = _S3_BUCKET_ACTIONS.get(method, [("", f"{method}Bucket")])
    action = next(a for q, a in table if q == "" or q in query)
    checks = [(f"s3:{action}", f"arn:{partition}:s3:::{bucket}", {})]
    if action == "CreateBucket" and resp.headers.get("x-amz-object-ownership"):
        # Creating a bucket with an object ownership setting also sets its ownership controls.
        checks.append(("s3:PutBucketOwnershipControls", f"arn:{partition}:s3:::{bucket}", {}))
    return checks
