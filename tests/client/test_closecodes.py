"""The SDK's copies of the hub's close codes equal the one list of them (`auth.closecodes`)."""

from __future__ import annotations

from rthub_client import stream

from auth.closecodes import MEANINGS, CloseCode


def test_the_sdk_close_codes_are_the_hubs() -> None:
    assert stream.CLOSE_UNAUTHENTICATED == CloseCode.UNAUTHENTICATED
    assert stream.CLOSE_FORBIDDEN == CloseCode.FORBIDDEN
    assert stream.CLOSE_ABNORMAL == CloseCode.ABNORMAL
    assert set(stream.PROTOCOL_CLOSES) == {
        CloseCode.UNSUPPORTED_DATA, CloseCode.POLICY_VIOLATION, CloseCode.MESSAGE_TOO_BIG
    }


def test_every_close_code_says_what_it_means() -> None:
    assert set(MEANINGS) == set(CloseCode)
    assert all(code.meaning for code in CloseCode)
