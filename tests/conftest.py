"""Every test run gets a Redis key prefix of its own on a real Redis server (the private one
``make test`` starts, or ``REDIS_URL``); its keys are deleted at the end (never FLUSHDB)."""

from __future__ import annotations

import copy
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

RUN_PREFIX = f"test-{uuid.uuid4().hex[:8]}"


def pytest_configure(config: pytest.Config) -> None:
    from django.conf import settings

    os.environ["SCHEDULER_REDIS_PREFIX"] = RUN_PREFIX
    settings.SCHEDULER_REDIS_PREFIX = RUN_PREFIX
    # sessions are open unless a test asks for tickets (its own settings or stack), whatever the
    # environment says: the suite passes with SCHEDULER_SESSION_AUTH set either way
    os.environ["SCHEDULER_SESSION_AUTH"] = "open"
    settings.SCHEDULER_SESSION_AUTH = "open"
    settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = f"{RUN_PREFIX}:layer"
    settings.CACHES["default"]["KEY_PREFIX"] = f"{RUN_PREFIX}:cache"


def delete_prefixed(prefix: str) -> None:
    from dispatch import store

    client = store.sync_client()
    batch = []
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            client.delete(*batch)
            batch.clear()
    if batch:
        client.delete(*batch)


@pytest.fixture(scope="session", autouse=True)
def _redis_run_keys() -> Iterator[None]:
    yield
    delete_prefixed(RUN_PREFIX)


@pytest.fixture
def live_prefix(settings: Any) -> Iterator[str]:
    """A fresh key prefix for one test, so its live state starts empty."""
    from channels.layers import channel_layers

    prefix = f"{RUN_PREFIX}-{uuid.uuid4().hex[:6]}"
    settings.SCHEDULER_REDIS_PREFIX = prefix
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    layers["default"]["CONFIG"]["prefix"] = f"{prefix}:layer"
    settings.CHANNEL_LAYERS = layers
    channel_layers.backends.clear()
    yield prefix
    channel_layers.backends.clear()
    delete_prefixed(prefix)


@pytest.fixture
def published(live_prefix: str, db: None) -> str:
    """Live state with the database's (empty) pool configuration published."""
    from dispatch.config import pools_publish

    pools_publish()
    return live_prefix


@pytest.fixture
def stack(live_prefix: str, transactional_db: None) -> Iterator[Any]:
    """Start real server processes: ``stack(servers=1, worker=True, **settings_env)``."""
    from tests.servers import Stack

    started: list[Stack] = []

    def start(**kwargs: Any) -> Stack:
        started.append(Stack(live_prefix, **kwargs).start())
        return started[-1]

    yield start
    for item in started:
        item.stop()


@pytest.fixture
def node_token(transactional_db: None) -> str:
    from nodes.tokens import token_create

    return token_create(name=f"test-{uuid.uuid4().hex[:6]}")[1]
