"""Redis cache of usage answers, keyed so it can never be stale or cross tenants.

The key holds the tenant, the read model's live copy (version and table OID),
its positions, the period and the filters: a new position, a rebuild or a
re-created database is a new key, so an entry is never older than the read
model. Entries expire after an hour. With Redis down, lookups miss (quickly,
for a few seconds without retrying) and answers come from PostgreSQL.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

log = logging.getLogger(__name__)


class UsageCache:
    """Best-effort bytes cache; every failure is a miss."""

    def __init__(
        self,
        client: Any,
        namespace: str,
        *,
        ttl_seconds: int = 3600,
        local_bytes: int = 32 * 1024 * 1024,
    ) -> None:
        self.client = client
        self.prefix = f"{namespace}:usage:v1"
        self.ttl = ttl_seconds
        self._down_until = 0.0
        # A small in-process copy in front of Redis: the same immutable keys, so
        # it can be no staler than Redis; it saves a network round trip per hit.
        self._local: OrderedDict[str, bytes] = OrderedDict()
        self._local_bytes = 0
        self._local_limit = local_bytes

    def key(self, tenant_id: str, *parts: object) -> str:
        return ":".join((self.prefix, tenant_id, *map(str, parts)))

    async def get(self, key: str) -> bytes | None:
        local = self._local.get(key)
        if local is not None:
            self._local.move_to_end(key)
            return local
        if self._is_down():
            return None
        try:
            value: bytes | None = await self.client.get(key)
        except Exception as e:  # noqa: BLE001 - a cache failure is only a miss
            self._mark_down(e)
            return None
        if value is not None:
            self._remember(key, value)
        return value

    async def put(self, key: str, value: bytes) -> None:
        self._remember(key, value)
        if self._is_down():
            return
        try:
            await self.client.set(key, value, ex=self.ttl)
        except Exception as e:  # noqa: BLE001
            self._mark_down(e)

    def _remember(self, key: str, value: bytes) -> None:
        if len(value) > self._local_limit // 8 or key in self._local:
            return
        self._local[key] = value
        self._local_bytes += len(value)
        while self._local_bytes > self._local_limit:
            _, evicted = self._local.popitem(last=False)
            self._local_bytes -= len(evicted)

    def _is_down(self) -> bool:
        return time.monotonic() < self._down_until

    def _mark_down(self, error: Exception) -> None:
        log.warning("usage cache unavailable: %s", type(error).__name__)
        self._down_until = time.monotonic() + 5.0
