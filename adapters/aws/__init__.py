"""What the AWS adapters (DynamoDB, S3, Route 53) share: how a boto3 session is made."""

from .session import is_local, make_session, plain_config

__all__ = ["is_local", "make_session", "plain_config"]
