"""`rthub` whose standard output is closed early (`rthub clients list | head -1`): what it did stays done,
and it does not blame Redis, print a traceback or complain at exit; it ends with 141, as a program the
pipe's SIGPIPE stopped would."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
import redis.asyncio as aioredis

from auth.registry import ClientRegistry
from hub.config import Settings
from tests import ROOT
from tests.servers import RedisServer

PIPE_CLOSED = 141  # 128 + SIGPIPE, what a shell reports for `yes | head -1`


def _env(redis_server: RedisServer, prefix: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "RTHUB_REDIS_URL": redis_server.url, "RTHUB_REDIS_PREFIX": prefix, **extra}


def _names(redis_server: RedisServer, prefix: str) -> list[str]:
    async def names() -> list[str]:
        redis = aioredis.Redis.from_url(redis_server.url)
        try:
            registry = ClientRegistry(redis, Settings.from_env({"RTHUB_REDIS_PREFIX": prefix}))
            return [client.name for client in await registry.list_all()]
        finally:
            await redis.aclose()

    return asyncio.run(names())


def _assert_quiet(stderr: str) -> None:
    for complaint in ("Redis", "Traceback", "Exception ignored", "Broken pipe", "BrokenPipeError"):
        assert complaint not in stderr, stderr


@pytest.mark.parametrize("unbuffered", ["", "1"], ids=["block-buffered", "unbuffered"])
def test_create_into_a_closed_pipe_creates_the_client_and_blames_nobody(
    redis_server: RedisServer, prefix: str, unbuffered: str
) -> None:
    """Buffered, the output meets the closed pipe at exit; unbuffered, at the first print (inside the
    command, where Redis errors are caught)."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line is written
    try:
        result = subprocess.run(
            [sys.executable, "-m", "hub.cli", "clients", "create", "--name", "Piped tutor", "--type", "adaptive",
             "--translator", "xapi"],
            cwd=ROOT, env=_env(redis_server, prefix, PYTHONUNBUFFERED=unbuffered), stdout=write_end,
            stderr=subprocess.PIPE, text=True, timeout=60,
        )
    finally:
        os.close(write_end)
    _assert_quiet(result.stderr)
    assert result.returncode == PIPE_CLOSED, result.stderr
    assert _names(redis_server, prefix) == ["Piped tutor"]


def test_list_into_head_prints_the_first_line_and_ends_quietly(redis_server: RedisServer, prefix: str) -> None:
    """More than a pipe's 64 KiB of listing, so `head -1` has left while `rthub` still writes."""

    async def register(count: int) -> None:
        redis = aioredis.Redis.from_url(redis_server.url)
        try:
            registry = ClientRegistry(redis, Settings.from_env({"RTHUB_REDIS_PREFIX": prefix}))
            for number in range(count):
                await registry.create(name=f"consumer {number:03d} " + "x" * 180, type="other", translator="xapi")
        finally:
            await redis.aclose()

    asyncio.run(register(600))
    result = subprocess.run(
        ["bash", "-c", f'"{sys.executable}" -m hub.cli clients list | head -1; echo "rthub: ${{PIPESTATUS[0]}}" >&2'],
        cwd=ROOT, env=_env(redis_server, prefix), capture_output=True, text=True, timeout=60,
    )
    assert result.stdout.split() == ["client_id", "name", "type", "translator", "actor", "delivery", "status",
                                     "live_connections"]
    assert result.stderr.splitlines()[-1] == f"rthub: {PIPE_CLOSED}", result.stderr
    _assert_quiet(result.stderr)
