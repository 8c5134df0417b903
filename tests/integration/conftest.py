"""Integration fixtures: the real write side, the real HTTP app, projections."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from application.bootstrap import WriteSide, bootstrap, initialise_database
from application.projecting.daemon import ProjectionDaemon
from application.settings import Settings
from interfaces.http.app import create_app


@pytest.fixture
def write_side(settings: Settings) -> Iterator[WriteSide]:
    initialise_database(settings)
    ws = bootstrap(settings)
    yield ws
    ws.close()


@pytest.fixture
def app(settings: Settings) -> Any:
    return create_app(settings)


@pytest.fixture
def client(app: Any) -> Iterator[TestClient[Any]]:
    """The real Litestar stack in-process (routing, middleware, auth, handlers)."""
    with TestClient(app=app) as test_client:
        yield test_client


@pytest.fixture
def projecting(app: Any, client: TestClient[Any]) -> Iterator[ProjectionDaemon]:
    """Projections kept caught up, as a worker process would (LISTEN/NOTIFY)."""
    projector = app.state.services.write_side.projector

    def rebuild_in_background(name: str) -> None:  # as the rebuild actor would
        threading.Thread(target=projector.rebuild_requested, args=(name,)).start()

    daemon = ProjectionDaemon(
        app.state.services.write_side.projector,
        tick_seconds=1.0,
        on_rebuild_requested=rebuild_in_background,
    )
    daemon.start()
    yield daemon
    daemon.stop()
