"""A real S3 API on loopback: moto in server mode, with IAM enforced so credentials are checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import boto3

from hub.dev.embedded import free_port
from tests.waiting import until_serving

REGION = "us-east-1"
# Requests moto serves before it checks credentials: enough to create the user, its key and its policy.
SETUP_REQUESTS = 3


class S3Server:
    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.key_id = self.secret = ""

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(self.port)],
            env={"INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_REQUESTS), "PATH": "/usr/bin:/bin"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        until_serving(self.process, f"{self.endpoint}/moto-api/", "moto", 30)
        iam = boto3.client("iam", endpoint_url=self.endpoint, region_name=REGION,
                           aws_access_key_id="AKIASETUP", aws_secret_access_key="setup")
        iam.create_user(UserName="backfill")
        key = iam.create_access_key(UserName="backfill")["AccessKey"]
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName="backfill", PolicyName="s3", PolicyDocument=json.dumps(policy))
        self.key_id, self.secret = key["AccessKeyId"], key["SecretAccessKey"]

    def environ(self, secret: str | None = None) -> dict[str, str]:
        """What a process needs to reach this S3 (standard AWS variables), optionally with another secret."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": REGION, "AWS_ACCESS_KEY_ID": self.key_id,
                "AWS_SECRET_ACCESS_KEY": self.secret if secret is None else secret}

    def s3(self):  # type: ignore[no-untyped-def]
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=self.key_id,
                            aws_secret_access_key=self.secret)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None
