"""The documents of workload identity federation, as pure functions of ids (no Pulumi).

Each cloud trusts a runner in another cloud by the token that cloud's platform gives
the runner, and by nothing else: an exact issuer, audience and subject. What each
function returns is what the Pulumi program declares and what the tests and the
policy pack check, so the trust a stack creates is readable here in one place:

* AWS trusts a GCP runner's Google ID token (``accounts.google.com``: ``aud`` and
  ``sub`` = the service account's unique id, ``oaud`` = the requested audience) and an
  Azure runner's Entra ID token (through the account's IAM OIDC provider for the
  tenant: ``aud`` = the app registration, ``sub`` = the managed identity's object id).
* GCP trusts an AWS runner through a workload identity pool provider of type AWS
  (signed ``GetCallerIdentity``, the runner role's sessions only) and an Azure runner
  through an OIDC provider (``sub`` = the managed identity's object id).
* Azure trusts a GCP runner (issuer ``https://accounts.google.com``, subject = the
  service account's unique id) and an AWS runner (the account's outbound web identity
  federation issuer, subject = the runner role ARN, or an EKS issuer) with federated
  identity credentials on the runner's managed identity.

The ``credential_config_*`` functions give what a runner hands Google's client
libraries (an ``external_account`` file for ``GOOGLE_APPLICATION_CREDENTIALS``).
"""

from __future__ import annotations

from typing import Any

GOOGLE_ISSUER = "https://accounts.google.com"
AZURE_TOKEN_EXCHANGE = "api://AzureADTokenExchange"
GCP_STS = "https://sts.googleapis.com/v1/token"
#: the one role a federated principal gets on the runner service account: impersonate it
WORKLOAD_IDENTITY_USER = "roles/iam.workloadIdentityUser"
#: Google's documented mapping: the AWS role of an assumed-role session, without the session
AWS_ROLE_ATTRIBUTE = ("assertion.arn.contains('assumed-role') ? assertion.arn.extract('{account_arn}assumed-role/')"
                      " + 'assumed-role/' + assertion.arn.extract('assumed-role/{role_name}/') : assertion.arn")
#: token files a runner's refresher writes (README: "Runners: one identity, no keys")
AWS_TOKEN_FILE = "/var/run/mcrepl/tokens/aws"
AZURE_TOKEN_FILE = "/var/run/mcrepl/tokens/azure"
GCP_CREDENTIALS_FILE = "/etc/mcrepl/gcp-credentials.json"


def issuer_host(issuer: str) -> str:
    """``https://sts.windows.net/T/`` → ``sts.windows.net/T/``: how IAM names an OIDC issuer."""
    return issuer.split("://", 1)[-1]


def aws_home_statement(assumed_by: list[str]) -> dict[str, Any] | None:
    """Who may assume the runner role inside AWS: service principals and/or role ARNs."""
    services = sorted(p for p in assumed_by if p.endswith(".amazonaws.com"))
    arns = sorted(p for p in assumed_by if p.startswith("arn:"))
    principal = {k: v for k, v in (("Service", services), ("AWS", arns)) if v}
    if not principal:
        return None
    return {"Sid": "RunnerInAws", "Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}


def aws_trust_from_gcp(unique_id: str, audience: str) -> dict[str, Any]:
    """The runner role trusts one GCP service account's Google ID tokens for ``audience``."""
    return {"Sid": "RunnerInGcp", "Effect": "Allow", "Principal": {"Federated": "accounts.google.com"},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {"accounts.google.com:aud": unique_id,
                                           "accounts.google.com:sub": unique_id,
                                           "accounts.google.com:oaud": audience}}}


def aws_trust_from_azure(provider_arn: str, issuer: str, audience: str, principal_id: str) -> dict[str, Any]:
    """The runner role trusts one managed identity's Entra ID tokens for ``audience``."""
    host = issuer_host(issuer)
    return {"Sid": "RunnerInAzure", "Effect": "Allow", "Principal": {"Federated": provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {f"{host}:aud": audience, f"{host}:sub": principal_id}}}


def aws_trust_policy(statements: list[dict[str, Any] | None]) -> dict[str, Any]:
    """A trust policy of the given statements (``None`` entries are left out)."""
    return {"Version": "2012-10-17", "Statement": [s for s in statements if s]}


def aws_token_grant(audience: str = AZURE_TOKEN_EXCHANGE) -> dict[str, Any]:
    """The AWS runner may mint outbound JWTs for ``audience`` only.

    ``sts:GetWebIdentityToken`` has no resource-level permission, so ``Resource`` is
    ``*`` and the audience condition is the whole scope of the grant.
    """
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "RunnerTokenForAzure", "Effect": "Allow", "Action": "sts:GetWebIdentityToken", "Resource": "*",
        "Condition": {"ForAnyValue:StringEquals": {"sts:IdentityTokenAudience": audience}}}]}


def aws_assumed_role(account_id: str, role_name: str) -> str:
    """The ``attribute.aws_role`` value of the runner role's sessions."""
    return f"arn:aws:sts::{account_id}:assumed-role/{role_name}"


def gcp_aws_provider_condition(account_id: str, role_name: str) -> str:
    """Only the runner role's sessions get past the pool's AWS provider."""
    return f"attribute.aws_role == '{aws_assumed_role(account_id, role_name)}'"


def gcp_aws_mapping() -> dict[str, str]:
    """Attribute mapping of the pool's AWS provider (Google's documented default)."""
    return {"google.subject": "assertion.arn", "attribute.aws_role": AWS_ROLE_ATTRIBUTE}


def gcp_subject_condition(subject: str) -> str:
    """Only tokens whose ``sub`` is the runner's get past the pool's OIDC provider."""
    return f"assertion.sub == '{subject}'"


def gcp_aws_member(pool_name: str, account_id: str, role_name: str) -> str:
    """The principal set of the runner role's sessions in ``pool_name`` (``projects/N/.../POOL``)."""
    return f"principalSet://iam.googleapis.com/{pool_name}/attribute.aws_role/{aws_assumed_role(account_id, role_name)}"


def gcp_subject_member(pool_name: str, subject: str) -> str:
    """The one federated principal with ``subject`` in ``pool_name``."""
    return f"principal://iam.googleapis.com/{pool_name}/subject/{subject}"


def _external_account(provider_name: str, email: str, token_type: str, source: dict[str, Any]) -> dict[str, Any]:
    return {"type": "external_account", "audience": f"//iam.googleapis.com/{provider_name}",
            "subject_token_type": token_type, "token_url": GCP_STS,
            "service_account_impersonation_url": "https://iamcredentials.googleapis.com/v1/projects/-/"
                                                 f"serviceAccounts/{email}:generateAccessToken",
            "credential_source": source}


def credential_config_aws(provider_name: str, email: str) -> dict[str, Any]:
    """``GOOGLE_APPLICATION_CREDENTIALS`` content for a runner on AWS (EC2/ECS metadata)."""
    return _external_account(provider_name, email, "urn:ietf:params:aws:token-type:aws4_request", {
        "environment_id": "aws1",
        "region_url": "http://169.254.169.254/latest/meta-data/placement/availability-zone",
        "url": "http://169.254.169.254/latest/meta-data/iam/security-credentials",
        "regional_cred_verification_url":
            "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
        "imdsv2_session_token_url": "http://169.254.169.254/latest/api/token"})


def credential_config_azure(provider_name: str, email: str, audience: str, client_id: str) -> dict[str, Any]:
    """``GOOGLE_APPLICATION_CREDENTIALS`` content for a runner on Azure (the managed identity
    endpoint of the VM or App Service, asked for a token of ``audience``)."""
    return _external_account(provider_name, email, "urn:ietf:params:oauth:token-type:jwt", {
        "url": "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01"
               f"&resource={audience}&client_id={client_id}",
        "headers": {"Metadata": "True"},
        "format": {"type": "json", "subject_token_field_name": "access_token"}})


def aws_runner_env(role_arn: str) -> dict[str, str]:
    """What boto3's web-identity provider reads (the token file is kept fresh by the runner)."""
    return {"AWS_ROLE_ARN": role_arn, "AWS_WEB_IDENTITY_TOKEN_FILE": AWS_TOKEN_FILE,
            "AWS_ROLE_SESSION_NAME": "mcrepl-runner"}


def azure_runner_env(client_id: str, tenant_id: str) -> dict[str, str]:
    """What azure-identity's ``WorkloadIdentityCredential`` (in ``DefaultAzureCredential``) reads."""
    return {"AZURE_CLIENT_ID": client_id, "AZURE_TENANT_ID": tenant_id,
            "AZURE_FEDERATED_TOKEN_FILE": AZURE_TOKEN_FILE}


__all__ = ["AZURE_TOKEN_EXCHANGE", "GOOGLE_ISSUER", "WORKLOAD_IDENTITY_USER", "aws_home_statement",
           "aws_runner_env", "aws_token_grant", "aws_trust_from_azure", "aws_trust_from_gcp", "aws_trust_policy",
           "azure_runner_env", "credential_config_aws", "credential_config_azure", "gcp_aws_mapping",
           "gcp_aws_member", "gcp_aws_provider_condition", "gcp_subject_condition", "gcp_subject_member",
           "issuer_host"]
