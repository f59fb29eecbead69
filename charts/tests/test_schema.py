"""values.schema.json: good values pass, bad values are rejected by Helm with a message naming the key."""

from __future__ import annotations

import json

import pytest

import helm_python as helm

from conftest import CHART_DIR, NAMESPACE, RELEASE

# (values, text the error must contain: the JSON pointer of the offending key and the broken rule)
BAD_VALUES = [
    ({"replicaCount": "two"}, "/replicaCount': got string, want integer"),
    ({"replicaCount": 0}, "/replicaCount': minimum: got 0, want 1"),
    ({"replicas": 2}, "additional properties 'replicas' not allowed"),  # typo of replicaCount
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'"),
    ({"image": {"repository": ""}}, "/image/repository'"),
    ({"image": {"digest": "sha256:short"}}, "/image/digest'"),
    ({"operator": {"logFormat": "xml"}}, "/operator/logFormat': value must be one of 'json', 'text'"),
    ({"operator": {"resyncInterval": "soon"}}, "/operator/resyncInterval'"),
    ({"operator": {"resyncInterval": 600}}, "/operator/resyncInterval': got number, want string"),
    ({"operator": {"concurrency": 0}}, "/operator/concurrency': minimum: got 0, want 1"),
    ({"operator": {"concurrency": 1000}}, "/operator/concurrency': maximum: got 1,000, want 256"),
    ({"operator": {"watchNamespace": "Team_A"}}, "/operator/watchNamespace'"),
    ({"operator": {"clusterId": "prod cluster"}}, "/operator/clusterId'"),  # space: not a valid AWS tag value here
    ({"operator": {"clusterId": "prod#1"}}, "/operator/clusterId'"),
    ({"operator": {"clusterId": "x" * 129}}, "/operator/clusterId'"),  # longer than 128 characters
    ({"operator": {"clusterId": 1234}}, "/operator/clusterId': got number, want string"),  # --set-string for numbers
    ({"operator": {"aws": {"region": "US East"}}}, "/operator/aws/region'"),
    ({"operator": {"aws": {"endpointUrl": "localhost:4566"}}}, "/operator/aws/endpointUrl'"),
    ({"operator": {"leaderElection": {"enabled": "yes"}}}, "/operator/leaderElection/enabled': got string, want boolean"),
    ({"operator": {"extraArgs": ["run"]}}, "/operator/extraArgs/0'"),
    ({"serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "my-role"}}}, "/serviceAccount/annotations/eks.amazonaws.com~1role-arn'"),
    ({"serviceAccount": {"annotations": {"replicas": 2}}}, "/serviceAccount/annotations/replicas': got number, want string"),
    ({"metrics": {"port": 70000}}, "/metrics/port': maximum: got 70,000, want 65,535"),
    ({"metrics": {"serviceMonitor": {"interval": "often"}}}, "/metrics/serviceMonitor/interval'"),
    ({"podDisruptionBudget": {"maxUnavailable": "half"}}, "/podDisruptionBudget/maxUnavailable'"),
    ({"topologySpread": {"whenUnsatisfiable": "Never"}}, "/topologySpread/whenUnsatisfiable'"),
    ({"probes": {"readiness": {"path": "readyz"}}}, "/probes/readiness/path'"),
    ({"nodeSelector": {"disk": True}}, "/nodeSelector/disk': got boolean, want string"),
]


@pytest.mark.parametrize("values,message", BAD_VALUES, ids=[json.dumps(v, separators=(",", ":")) for v, _ in BAD_VALUES])
def test_bad_values_are_rejected_with_a_clear_message(chart, values, message):
    with pytest.raises(helm.HelmValuesError) as err:
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    text = str(err.value)
    assert "values don't meet the specifications of the schema" in text
    assert message in text, text


def test_install_rejects_bad_values_too(chart):
    """The install action (what `helm install` runs) refuses them before touching a cluster."""
    cfg = helm.Config(namespace=NAMESPACE, storage_driver="memory")
    try:
        with pytest.raises(helm.HelmError, match="/operator/logFormat"):
            cfg.install(chart, RELEASE, {"operator": {"logFormat": "xml"}}, dry_run="client")
    finally:
        cfg.close()


GOOD_VALUES = [
    {},
    {"operator": {"resyncInterval": "30s"}},
    {"operator": {"resyncInterval": "1h30m", "watchNamespace": "team-a", "aws": {"region": "us-gov-west-1"}}},
    {"operator": {"aws": {"endpointUrl": "http://127.0.0.1:4566"}}},
    {"operator": {"clusterId": "arn:aws:eks:eu-west-1:123456789012:cluster/prod"}},
    {"operator": {"clusterId": "x" * 128}},
    {"operator": {"clusterId": "a_b.c+d=e@f-1"}},
    {"podDisruptionBudget": {"maxUnavailable": "25%"}},
    {"serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws-cn:iam::123456789012:role/path/x"}}},
    {"image": {"repository": "localhost:5000/imagestack-operator", "tag": "dev"}},
    {"global": {"imageRegistry": "x"}},
]


@pytest.mark.parametrize("values", GOOD_VALUES, ids=[json.dumps(v, separators=(",", ":")) for v in GOOD_VALUES])
def test_good_values_pass(chart, values):
    chart.validate_schema(values)
    assert chart.render(values, name=RELEASE, namespace=NAMESPACE)


def test_every_default_value_is_described_by_the_schema(chart):
    """additionalProperties:false everywhere a value is a fixed set of keys; the defaults validate."""
    schema = chart.schema
    defaults = chart.values

    def walk(values, node, path):
        if not isinstance(values, dict) or node.get("type") != "object" or "properties" not in node:
            return
        for key, val in values.items():
            assert key in node["properties"] or node.get("additionalProperties") not in (False, None), f"{path}.{key} is not in values.schema.json"
            child = node["properties"].get(key, {})
            if "$ref" in child:
                child = schema["definitions"][child["$ref"].rsplit("/", 1)[1]]
            walk(val, child, f"{path}.{key}")

    walk(defaults, schema, "")
    chart.validate_schema(defaults)


# Rules the schema cannot express are checked by the templates (fail with a sentence).
CROSS_FIELD = [
    ({"replicaCount": 2, "operator": {"leaderElection": {"enabled": False}}}, "several replicas would reconcile the same stacks at once"),
    ({"podDisruptionBudget": {"minAvailable": 1}}, "set either minAvailable or maxUnavailable, not both"),
    ({"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}}, "serviceMonitor.enabled needs metrics.service.enabled=true"),
]


@pytest.mark.parametrize("values,message", CROSS_FIELD, ids=["replicas-without-leader-election", "pdb-both", "servicemonitor-without-service"])
def test_cross_field_rules(chart, values, message):
    with pytest.raises(helm.HelmError, match=message):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
