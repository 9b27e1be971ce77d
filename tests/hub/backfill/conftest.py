# The one Ralph fixture (and the build of its virtualenv before any test runs), shared with the endpoint tests.
from tests.hub.delivery.webhook.formats.conftest import pytest_collection_finish, ralph  # noqa: F401
