"""The Dramatiq broker (Redis). Import this module before any actor module."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from application.logs import configure_logging
from application.settings import Settings
from workers.dead_letters import DeadLetterReasons

DEAD_LETTER_TTL_MS = 30 * 24 * 3600 * 1000  # 30 days to inspect and replay failures


def create_broker(settings: Settings) -> RedisBroker:
    broker = RedisBroker(
        url=settings.redis_url,
        namespace=settings.redis_namespace,
        dead_message_ttl=DEAD_LETTER_TTL_MS,
    )
    broker.add_middleware(DeadLetterReasons(broker.client, settings.redis_namespace))
    return broker


settings = Settings.from_env()
configure_logging(settings.log_level)  # JSON lines, as the API writes them
broker = create_broker(settings)
dramatiq.set_broker(broker)
