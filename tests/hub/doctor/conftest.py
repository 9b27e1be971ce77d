from tests.hub.delivery.webhook.formats.conftest import pytest_collection_finish, ralph  # noqa: F401
