"""Fixtures shared by the integration and end-to-end tests.

The store is the embedded MongoDB wire server (nx-27017), started once per session,
unless ``MONGODB_URL`` points at another server; the broker is the real RabbitMQ at
``AMQP_URL``. Names are unique per test, so runs never collide.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from shared.runtime.settings import Settings
from testkit.broker import delete_namespace
from tests.support.system import System, make_settings, running_system
from tools.embedded_mongo import EmbeddedMongo

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


@pytest.fixture(scope="session")
def amqp_url() -> str:
    return AMQP_URL


@pytest.fixture(scope="session")
def mongo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("MONGODB_URL")
    if configured:
        yield configured
        return
    server = EmbeddedMongo(tmp_path_factory.mktemp("mongo"))
    yield server.start()
    server.stop()


@pytest.fixture(scope="session")
def namespace(amqp_url: str) -> Iterator[str]:
    """One broker namespace for the whole session (queues are purged between tests)."""
    name = f"t{uuid4().hex[:10]}."
    yield name
    asyncio.run(delete_namespace(amqp_url, name, extra_services=("probe",)))


@pytest.fixture
def settings(amqp_url: str, mongo_url: str, namespace: str, tmp_path: Path) -> Settings:
    return make_settings(
        amqp_url=amqp_url, mongo_url=mongo_url, namespace=namespace, data_dir=tmp_path / "data"
    )


@pytest.fixture
async def system(settings: Settings) -> AsyncIterator[System]:
    async with running_system(settings) as running:
        yield running
