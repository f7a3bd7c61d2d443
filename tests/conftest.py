"""Fixtures shared by the integration and end-to-end tests.

The store is the embedded MongoDB wire server (nx-27017), started once per session,
unless ``MONGODB_URL`` points at another server; the broker is the real RabbitMQ at
``AMQP_URL``. Names are unique per test, so runs never collide.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from shared.runtime.settings import Settings
from testkit.broker import BrokerSession, close_session, open_session
from tests.support.system import System, make_settings, running_system
from tools.embedded_mongo import EmbeddedMongo

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerSession]:
    """The session's virtual host and broker users (created once, deleted at the end)."""
    session = open_session(AMQP_URL, tmp_path_factory.mktemp("broker"))
    yield session
    close_session(session)


@pytest.fixture(scope="session")
def amqp_url(broker: BrokerSession) -> str:
    """``guest`` on the session's virtual host: the observer (and the attacker)."""
    return broker.admin_url


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
def namespace() -> str:
    """No name prefix: the session's virtual host keeps it apart from every other run."""
    return ""


@pytest.fixture
def settings(broker: BrokerSession, mongo_url: str, tmp_path: Path) -> Settings:
    return make_settings(broker=broker, mongo_url=mongo_url, data_dir=tmp_path / "data")


@pytest.fixture
async def system(settings: Settings) -> AsyncIterator[System]:
    async with running_system(settings) as running:
        yield running
