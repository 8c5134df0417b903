"""Redis cache of usage answers, keyed so it can never be stale or cross tenants.

The key holds the tenant, the read model's version and position, the period and
the filters: a new position is a new key, so an entry is never older than the
read model. With Redis down, lookups miss (quickly, for a few seconds without
retrying) and answers come from PostgreSQL.
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger(__name__)


class UsageCache:
    """Best-effort bytes cache; every failure is a miss."""

    def __init__(self, client: Any, namespace: str, *, ttl_seconds: int = 3600) -> None:
        self.client = client
        self.prefix = f"{namespace}:usage:v1"
        self.ttl = ttl_seconds
        self._down_until = 0.0

    def key(self, tenant_id: str, *parts: object) -> str:
        return ":".join((self.prefix, tenant_id, *map(str, parts)))

    async def get(self, key: str) -> bytes | None:
        if self._is_down():
            return None
        try:
            value: bytes | None = await self.client.get(key)
        except Exception as e:  # noqa: BLE001 - a cache failure is only a miss
            self._mark_down(e)
            return None
        return value

    async def put(self, key: str, value: bytes) -> None:
        if self._is_down():
            return
        try:
            await self.client.set(key, value, ex=self.ttl)
        except Exception as e:  # noqa: BLE001
            self._mark_down(e)

    def _is_down(self) -> bool:
        return time.monotonic() < self._down_until

    def _mark_down(self, error: Exception) -> None:
        log.warning("usage cache unavailable: %s", type(error).__name__)
        self._down_until = time.monotonic() + 5.0
