"""Backfill from an object store: a real S3 API (moto in server mode, credentials checked) into Ralph."""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator

import orjson
import pytest

from hub.config import Settings
from tests.hub.backfill.helpers import backfill, expected_statements, history
from tests.hub.backfill.s3_server import S3Server
from tests.hub.backfill.test_ralph import lrs_client
from tests.hub.delivery.webhook.formats.lrs_server import RalphServer
from tests.servers import RedisServer

COURSE = "course-v1:MITx+6.002x+2026_T1"


@pytest.fixture
def s3() -> Iterator[S3Server]:
    server = S3Server()
    server.start()
    yield server
    server.stop()


def lines(events: list[dict]) -> bytes:
    return b"".join(orjson.dumps(event) + b"\n" for event in events)


@pytest.mark.slow
def test_s3_prefix_into_ralph_and_bad_credentials_refused(
    redis_server: RedisServer, prefix: str, ralph: RalphServer, s3: S3Server
) -> None:
    events = history(900, seed=7)
    bucket = s3.s3()
    bucket.create_bucket(Bucket="tracking")
    bucket.put_object(Bucket="tracking", Key="lms-1/tracking.log-20250301.gz", Body=gzip.compress(lines(events[:500])))
    bucket.put_object(Bucket="tracking", Key="lms-1/tracking.log", Body=lines(events[500:]))
    bucket.put_object(Bucket="tracking", Key="other/tracking.log", Body=lines(history(50, seed=8)))
    env = {**os.environ, "RTHUB_REDIS_URL": redis_server.url, "RTHUB_REDIS_PREFIX": prefix,
           "RTHUB_WEBHOOK_ALLOW_PRIVATE": "true", **s3.environ()}
    settings = Settings.from_env(env)
    client_id = lrs_client(settings, ralph, [{"courses": [COURSE]}])

    refused = backfill({**env, **s3.environ(secret="not-the-secret")}, "--client", client_id, "s3://tracking/lms-1/")
    assert refused.returncode == 2
    assert "s3://tracking/lms-1/: cannot list: access refused, check the credentials" in refused.stderr
    missing = backfill(env, "--client", client_id, "s3://tracking/lms-2/")
    assert missing.returncode == 2 and "s3://tracking/lms-2/: no file there" in missing.stderr

    done = backfill(env, "--client", client_id, "s3://tracking/lms-1/")
    assert done.returncode == 0, done.stderr
    assert "900 lines from 2 files" in done.stderr
    expected = expected_statements(settings, [e for e in events if e["context"]["course_id"] == COURSE], "xapi",
                                   "enterprise")
    stored = ralph.statements()
    assert len(stored) == len(expected) > 100
    assert sorted(s["id"] for s in stored) == sorted(s["id"] for s in expected)
