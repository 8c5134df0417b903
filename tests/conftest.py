"""Fixtures shared by every test layer.

Integration and e2e tests use the real PostgreSQL and Redis on localhost. Each
test gets its own database schema and Redis namespace, so tests never see each
other's data. When a service is missing, tests fail under CI and skip locally.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import psycopg
import pytest
import redis
from psycopg import sql

from application.settings import Settings

DATABASE_URL = os.environ.get(
    "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/billing"
)
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def _missing_services() -> list[str]:
    missing = []
    try:
        with psycopg.connect(
            DATABASE_URL.rsplit("/", 1)[0] + "/postgres", connect_timeout=3
        ) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        missing.append("PostgreSQL")
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=3).ping()
    except redis.RedisError:
        missing.append("Redis")
    return missing


@pytest.fixture(scope="session")
def real_services() -> None:
    missing = _missing_services()
    if missing:
        message = f"{' and '.join(missing)} not reachable (run `make services`)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def settings(real_services: None, tmp_path: Path) -> Iterator[Settings]:
    """Settings for one test: its own schema, Redis namespace and export dir."""
    with isolated_settings(tmp_path) as test_settings:
        yield test_settings


@pytest.fixture
def settings_factory(
    real_services: None, tmp_path: Path
) -> Callable[[], AbstractContextManager[Settings]]:
    """Fresh isolated settings on demand (one per hypothesis example, say)."""
    return lambda: isolated_settings(tmp_path)


@contextmanager
def isolated_settings(tmp_path: Path) -> Iterator[Settings]:
    """Its own schema, Redis namespace and export dir; all removed afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    test_settings = Settings(
        database_url=DATABASE_URL,
        redis_url=REDIS_URL,
        db_schema=schema,
        redis_namespace=f"test-{schema}",
        export_dir=tmp_path / "exports",
        projection_tick_seconds=1.0,
        max_read_wait_seconds=15.0,
        db_pool_size=4,
    )
    try:
        yield test_settings
    finally:
        drop_schema(test_settings)
        client = redis.Redis.from_url(REDIS_URL)
        pattern = f"{test_settings.redis_namespace}:*"
        keys = list(client.scan_iter(pattern, count=1000))
        if keys:
            client.delete(*keys)


def drop_schema(settings: Settings) -> None:
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(settings.db_schema)
            )
        )
