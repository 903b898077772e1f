"""The security properties of template.yaml that checkov and cfn-lint do not know to ask for: who may
call which route, which grants are unscoped and why, where logs go and for how long, and that the
provider-error alarm reads the metrics the handlers emit."""

from __future__ import annotations

import json
from typing import Any

import pytest

from batchbridge_local import template as tpl

TEMPLATE = tpl.load()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]

# The only actions granted on Resource "*", each because IAM offers nothing narrower.
UNSCOPED_ALLOWED = {
    "states:SendTaskSuccess",  # task tokens of service-integration tasks cannot be scoped by IAM
    # CloudWatch Logs vended-log delivery (state machine logging) has no resource-level permissions
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}


def of_type(kind: str) -> dict[str, Any]:
    return {name: r for name, r in RESOURCES.items() if r["Type"] == kind}


def statements() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for name, resource in RESOURCES.items():
        for policy in resource.get("Properties", {}).get("Policies", []) or []:
            if isinstance(policy, dict) and "Statement" in policy:
                found += [(name, s) for s in policy["Statement"]]
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_every_route_but_the_provider_callback_requires_iam():
    api = RESOURCES["BatchApi"]["Properties"]
    assert api["Auth"]["DefaultAuthorizer"] == "AWS_IAM"
    open_routes = []
    for name, fn in of_type("AWS::Serverless::Function").items():
        for event_name, event in fn["Properties"].get("Events", {}).items():
            if event["Type"] == "Api" and event["Properties"].get("Auth", {}).get("Authorizer") == "NONE":
                open_routes.append((name, event_name, event["Properties"]["Path"]))
    assert open_routes == [("ApiFunction", "ProviderCallback", "/callbacks/{batch_id}/{token}")]


def test_no_grant_is_a_wildcard_action_and_unscoped_resources_are_the_justified_few():
    assert statements(), "no inline statements found: the test would be vacuous"
    for owner, statement in statements():
        actions = as_list(statement["Action"])
        assert all("*" not in a.split(":")[1] or a == "kms:GenerateDataKey*" for a in actions), (
            owner,
            statement,
        )
        if statement["Resource"] == "*":
            assert set(actions) <= UNSCOPED_ALLOWED, (owner, statement)


@pytest.mark.parametrize("name", sorted(of_type("AWS::Serverless::Function")))
def test_functions_use_narrow_data_grants_not_the_crud_templates(name):
    policies = RESOURCES[name]["Properties"]["Policies"]
    used = {key for p in policies if isinstance(p, dict) for key in p}
    assert not used & {"DynamoDBCrudPolicy", "S3CrudPolicy", "S3FullAccessPolicy", "AWSLambdaExecute"}


@pytest.mark.parametrize("name", sorted(of_type("AWS::Serverless::Function")))
def test_every_function_logs_to_its_own_group_with_retention(name):
    group = RESOURCES[name]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    assert RESOURCES[group]["Type"] == "AWS::Logs::LogGroup"
    assert RESOURCES[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_every_log_group_has_retention():
    groups = of_type("AWS::Logs::LogGroup")
    assert len(groups) >= 8
    assert all("RetentionInDays" in g["Properties"] for g in groups.values())


def test_api_access_logs_never_record_the_callback_token():
    setting = RESOURCES["BatchApi"]["Properties"]["AccessLogSetting"]
    assert setting["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    fields = json.loads(setting["Format"])
    assert "$context.resourcePath" in fields.values()
    assert not {"$context.path", "$context.requestOverride.path", "$input.body"} & set(fields.values())


def test_stores_and_topic_are_locked_down():
    bucket = RESOURCES["ResultsBucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert any(r["Status"] == "Enabled" for r in bucket["LifecycleConfiguration"]["Rules"])
    (deny,) = RESOURCES["ResultsBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    table = RESOURCES["BatchTable"]["Properties"]
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    assert RESOURCES["CompletionTopic"]["Properties"]["KmsMasterKeyId"]


def test_the_provider_error_alarm_reads_what_the_handlers_emit():
    from batchbridge.observability import metrics

    alarm = RESOURCES["ProviderErrorRateAlarm"]["Properties"]
    stats = {m["Id"]: m["MetricStat"]["Metric"] for m in alarm["Metrics"] if "MetricStat" in m}
    assert {s["MetricName"] for s in stats.values()} == {"ProviderErrors", "ProviderCalls"}
    for metric in stats.values():
        assert metric["Namespace"] == metrics.namespace
        assert metric["Dimensions"] == [{"Name": "service", "Value": metrics.service}]
    assert RESOURCES["FailedExecutionsAlarm"]["Properties"]["MetricName"] == "ExecutionsFailed"


def test_the_signing_layer_is_deployed_on_request_and_then_reaches_every_function():
    # cryptography (13 MB) is only for SuperOffice system users: off by default, on with one parameter
    assert TEMPLATE["Parameters"]["SuperOfficeSystemUsers"]["Default"] == "false"
    assert TEMPLATE["Conditions"]["SystemUserSigning"] == {
        "Fn::Equals": [{"Ref": "SuperOfficeSystemUsers"}, "true"]
    }
    assert RESOURCES["SigningLayer"]["Condition"] == "SystemUserSigning"
    assert RESOURCES["SigningLayer"]["Metadata"]["BuildMethod"] == "makefile"
    assert TEMPLATE["Globals"]["Function"]["Layers"] == [
        {"Ref": "SharedLayer"},
        {"Fn::If": ["SystemUserSigning", {"Ref": "SigningLayer"}, {"Ref": "AWS::NoValue"}]},
    ]
    functions = of_type("AWS::Serverless::Function")
    assert functions and not [n for n, f in functions.items() if "Layers" in f["Properties"]]
