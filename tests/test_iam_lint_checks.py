"""Each IAM lint case issue 13 lists is caught, by parliament (AWS) or by our rules.

One document per case, each otherwise clean, and the exact rule id expected; the rendered
documents of every role stay clean (tests/test_policies_iam.py).
"""

from __future__ import annotations

import json

import pytest

from mcrepl.policies.iam import lint

TABLE = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders"
ACCOUNT = "/subscriptions/s/resourceGroups/g/providers/Microsoft.DocumentDB/databaseAccounts/acc"


def _aws(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def _allow(action: str | list[str], resource: str = TABLE) -> dict:
    return {"Effect": "Allow", "Action": action if isinstance(action, list) else [action], "Resource": resource}


CASES = {
    "question-mark wildcard in an action": (_aws(_allow("dynamodb:Get?tem")), "iam.aws-wildcard-action"),
    "question-mark wildcard in a resource": (_aws(_allow("dynamodb:GetItem", TABLE[:-1] + "?")),
                                             "iam.aws-wildcard-resource"),
    "iam:PassRole": (_aws(_allow("iam:PassRole", "arn:aws:iam::123456789012:role/admin")),
                     "iam.aws-privilege-escalation"),
    "policy-version escalation (parliament)": (
        _aws(_allow(["iam:CreatePolicyVersion"], "arn:aws:iam::123456789012:policy/p")), "iam.aws-privilege-escalation"),
    "Principal * trust policy": (_aws({"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole"}),
                                 "iam.aws-public-principal"),
    "Principal AWS * trust policy": (_aws({"Effect": "Allow", "Principal": {"AWS": "*"},
                                           "Action": "sts:AssumeRoleWithWebIdentity"}), "iam.aws-public-principal"),
    "policy embedded as a JSON string": ({"name": "inline", "policy": json.dumps(_aws(_allow("dynamodb:*")))},
                                         "iam.aws-wildcard-action"),
    "trust policy embedded as a JSON string": (
        {"assumeRolePolicy": json.dumps(_aws({"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole"}))},
        "iam.aws-public-principal"),
    "AWS managed admin policy": ({"managedPolicyArns": ["arn:aws:iam::aws:policy/AdministratorAccess"]},
                                 "iam.aws-managed-admin-policy"),
    "AWS managed DynamoDB full access": ({"policyArn": "arn:aws:iam::aws:policy/AmazonDynamoDBFullAccess"},
                                         "iam.aws-managed-admin-policy"),
    "unknown AWS action": (_aws(_allow("dynamodb:PutItems")), "iam.aws-unknown-action"),
    "action/resource mismatch": (_aws(_allow("dynamodb:GetRecords")), "iam.aws-resource-mismatch"),
    "Azure roleAssignments/write": (
        {"properties": {"roleName": "x", "permissions": [{"actions": ["Microsoft.Authorization/roleAssignments/write"]}]}},
        "iam.azure-privilege-escalation"),
    "Azure User Access Administrator": (
        {"properties": {"roleDefinitionId": "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/"
                                            "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9", "scope": ACCOUNT, "principalId": "p"}},
        "iam.azure-privilege-escalation"),
    "unknown Cosmos data action": (
        {"properties": {"permissions": [{"dataActions": [
            "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/write"]}]}}, "iam.azure-unknown-action"),
    "GCP serviceAccountTokenCreator": (
        {"bindings": [{"role": "roles/iam.serviceAccountTokenCreator", "members": ["serviceAccount:a@p.iam.gserviceaccount.com"]}]},
        "iam.gcp-privilege-escalation"),
    "GCP projectIamAdmin": (
        {"bindings": [{"role": "roles/resourcemanager.projectIamAdmin", "members": ["serviceAccount:a@p.iam.gserviceaccount.com"]}]},
        "iam.gcp-privilege-escalation"),
    "GCP cloudkms.admin": (
        {"role": "roles/cloudkms.admin", "member": "serviceAccount:a@p.iam.gserviceaccount.com"},
        "iam.gcp-privilege-escalation"),
    "GCP custom role with getAccessToken": (
        {"roleId": "x", "permissions": ["storage.objects.get", "iam.serviceAccounts.getAccessToken"]},
        "iam.gcp-privilege-escalation"),
    "GCP roles/viewer": ({"bindings": [{"role": "roles/viewer", "members": ["serviceAccount:a@p.iam.gserviceaccount.com"]}]},
                         "iam.gcp-primitive-role"),
    "unknown Cloud Storage permission": ({"roleId": "x", "permissions": ["storage.objects.write"]},
                                         "iam.gcp-unknown-permission"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_lint_catches(case: str) -> None:
    document, rule_id = CASES[case]
    found = lint(document, case)
    assert rule_id in {v.rule_id for v in found}, found
    assert all(v.fix for v in found)


def test_clean_neighbours_of_each_case_pass() -> None:
    """The narrow form of each case is not flagged (so the rules are not just noisy)."""
    clean = [
        _aws(_allow(["dynamodb:GetItem", "dynamodb:PutItem"])),
        _aws(_allow(["dynamodb:GetRecords"], f"{TABLE}/stream/2026-01-01T00:00:00.000")),
        _aws({"Effect": "Allow", "Principal": {"Federated": "accounts.google.com"},
              "Action": "sts:AssumeRoleWithWebIdentity",
              "Condition": {"StringEquals": {"accounts.google.com:sub": "1234567890"}}}),
        {"policy": json.dumps(_aws(_allow("dynamodb:Scan")))},
        {"bindings": [{"role": "roles/iam.workloadIdentityUser",
                       "members": ["principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/subject/s"]}]},
        {"properties": {"permissions": [{"dataActions": [
            "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/upsert"]}]}},
    ]
    for doc in clean:
        assert lint(doc, "clean") == [], doc
