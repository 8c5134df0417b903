"""One typed settings object, read from the environment once."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

DEVELOPMENT_JWT_SECRET = "development-only-secret-do-not-use-in-production-0123456789"  # noqa: S105
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_DIGITS = re.compile(r"[0-9]{1,18}")  # str.isdigit() also accepts "²" and "①"


class ConfigurationError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """Everything the service can be configured with (see README, Configuration)."""

    # URLs may hold passwords: they stay out of repr() (and so out of logs).
    database_url: str = field(
        default="postgresql://postgres@127.0.0.1:5432/billing", repr=False
    )
    db_schema: str = "billing"
    redis_url: str = field(default="redis://127.0.0.1:6379/0", repr=False)
    redis_namespace: str = "billing"
    environment: str = "development"
    jwt_secret: str = field(default=DEVELOPMENT_JWT_SECRET, repr=False)
    jwt_public_key: str = field(default="", repr=False)
    export_dir: Path = Path("var/exports")
    enabled_tenants: frozenset[str] | None = None  # None means every tenant
    max_batch_events: int = 10_000
    max_body_bytes: int = 16 * 1024 * 1024
    max_read_wait_seconds: float = 5.0
    projection_batch_size: int = 5_000
    projection_tick_seconds: float = 5.0
    # How often the workers record that time has passed (the forecast moves on it).
    clock_tick_seconds: float = 300.0
    db_pool_size: int = 8
    # Bounds on every wait for PostgreSQL, so an outage answers 503 promptly.
    db_connect_timeout_seconds: int = 2  # libpq connect_timeout (its minimum is 2)
    db_pool_timeout_seconds: float = 2.0  # a request's wait for a pooled connection
    db_statement_timeout_seconds: float = 5.0  # API request pools only
    local_cache_bytes: int = 32 * 1024 * 1024
    max_token_lifetime_seconds: int = 24 * 3600
    max_header_bytes: int = 16 * 1024
    log_level: str = "INFO"
    # `billing demo` only: embedded PostgreSQL/Redis where nothing answers
    # (auto), always, or never; their data lives under embedded_dir.
    embedded: str = "auto"
    embedded_dir: Path = Path("var/embedded")
    # Webhooks (application/notifying): delivery to private addresses is for
    # local development only; tries, backoff and timeouts bound each delivery.
    webhook_allow_private: bool = False
    webhook_timeout_seconds: float = 5.0
    webhook_max_attempts: int = 8
    webhook_backoff_seconds: float = 10.0  # the first retry's cap, doubled each time
    webhook_max_backoff_seconds: float = 3600.0
    webhook_recover_after_seconds: float = 60.0

    @property
    def is_development(self) -> bool:
        return self.environment == "development"

    def tenant_enabled(self, tenant_id: str) -> bool:
        return self.enabled_tenants is None or tenant_id in self.enabled_tenants

    def with_changes(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def postgres(self) -> PostgresParams:
        return PostgresParams.from_url(self.database_url)

    def eventsourcing_env(self, *, create_table: bool = False) -> dict[str, str]:
        """The environment eventsourcing's PostgreSQL factory is configured with."""
        pg = self.postgres
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": pg.dbname,
            "POSTGRES_HOST": pg.host,
            "POSTGRES_PORT": str(pg.port),
            "POSTGRES_USER": pg.user,
            "POSTGRES_PASSWORD": pg.password,
            "POSTGRES_SCHEMA": self.db_schema,
            # Few idle connections per application; grow on demand up to the size.
            "POSTGRES_POOL_SIZE": "1",
            "POSTGRES_MAX_OVERFLOW": str(max(self.db_pool_size - 1, 1)),
            # No ping per checkout (a round trip per batch): after a database
            # restart a broken connection fails one request and is replaced.
            "POSTGRES_PRE_PING": "n",
            # eventsourcing's name for the wait for a pooled connection (whole
            # seconds; BillingApplication applies the exact value and the
            # libpq connect_timeout to the pool).
            "POSTGRES_CONNECT_TIMEOUT": str(math.ceil(self.db_pool_timeout_seconds)),
            "CREATE_TABLE": "y" if create_table else "n",
        }

    def conninfo(
        self, *, application_name: str = "billing", statement_timeout: bool = False
    ) -> str:
        """A libpq connection string whose search_path is our schema; connecting
        gives up after `db_connect_timeout_seconds`. With `statement_timeout`
        (the API's request pools), statements are cancelled after
        `db_statement_timeout_seconds`."""
        pg = self.postgres
        parts = {
            "host": pg.host,
            "port": str(pg.port),
            "dbname": pg.dbname,
            "user": pg.user,
            "application_name": application_name,
            "connect_timeout": str(self.db_connect_timeout_seconds),
        }
        if pg.password:
            parts["password"] = pg.password
        quoted = " ".join(f"{k}='{_escape(v)}'" for k, v in parts.items())
        server = f"-c search_path={self.db_schema}"
        if statement_timeout:
            milliseconds = math.ceil(self.db_statement_timeout_seconds * 1000)
            server += f" -c statement_timeout={milliseconds}"
        return f"{quoted} options='{server}'"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from the environment; fail fast on bad values."""
        env = os.environ if env is None else env
        base = cls()
        settings = cls(
            database_url=env.get("DATABASE_URL", base.database_url),
            db_schema=env.get("BILLING_DB_SCHEMA", base.db_schema),
            redis_url=env.get("REDIS_URL", base.redis_url),
            redis_namespace=env.get("BILLING_REDIS_NAMESPACE", base.redis_namespace),
            environment=env.get("BILLING_ENV", base.environment),
            jwt_secret=env.get("BILLING_JWT_SECRET", ""),
            jwt_public_key=_read_key(env.get("BILLING_JWT_PUBLIC_KEY", "")),
            export_dir=Path(env.get("BILLING_EXPORT_DIR", str(base.export_dir))),
            enabled_tenants=_tenant_list(env.get("BILLING_ENABLED_TENANTS", "*")),
            max_read_wait_seconds=_number(env, "BILLING_MAX_READ_WAIT_SECONDS", 5.0),
            projection_batch_size=_whole(env, "BILLING_PROJECTION_BATCH_SIZE", 5000),
            projection_tick_seconds=_number(
                env, "BILLING_PROJECTION_TICK_SECONDS", 5.0
            ),
            clock_tick_seconds=_number(env, "BILLING_CLOCK_TICK_SECONDS", 300.0),
            db_pool_size=_whole(env, "BILLING_DB_POOL_SIZE", 8),
            db_connect_timeout_seconds=_whole(
                env,
                "BILLING_DB_CONNECT_TIMEOUT_SECONDS",
                base.db_connect_timeout_seconds,
            ),
            db_pool_timeout_seconds=_number(
                env, "BILLING_DB_POOL_TIMEOUT_SECONDS", base.db_pool_timeout_seconds
            ),
            db_statement_timeout_seconds=_number(
                env,
                "BILLING_DB_STATEMENT_TIMEOUT_SECONDS",
                base.db_statement_timeout_seconds,
            ),
            max_body_bytes=_whole(env, "BILLING_MAX_BODY_BYTES", base.max_body_bytes),
            local_cache_bytes=_whole(
                env,
                "BILLING_LOCAL_CACHE_BYTES",
                base.local_cache_bytes,
                allow_zero=True,
            ),
            max_token_lifetime_seconds=_whole(
                env,
                "BILLING_MAX_TOKEN_LIFETIME_SECONDS",
                base.max_token_lifetime_seconds,
            ),
            max_header_bytes=_whole(
                env, "BILLING_MAX_HEADER_BYTES", base.max_header_bytes
            ),
            log_level=env.get("BILLING_LOG_LEVEL", base.log_level).upper(),
            embedded=env.get("BILLING_EMBEDDED", base.embedded).strip().lower(),
            embedded_dir=Path(
                env.get("BILLING_EMBEDDED_DIR", "") or str(base.embedded_dir)
            ),
            **_webhook_settings(env, base),
        )
        return settings.checked()

    def checked(self) -> Settings:
        if self.environment not in ("development", "production"):
            raise ConfigurationError(
                "BILLING_ENV must be 'development' or 'production'"
            )
        if _SCHEMA_NAME.fullmatch(self.db_schema) is None:
            raise ConfigurationError(
                "BILLING_DB_SCHEMA must be a lowercase SQL identifier"
            )
        self.postgres  # noqa: B018 - parse now, so a bad DATABASE_URL fails at start
        if self.embedded not in ("auto", "always", "never"):
            raise ConfigurationError(
                "BILLING_EMBEDDED must be 'auto', 'always' or 'never'"
            )
        if not self.jwt_secret:
            if not self.is_development:
                raise ConfigurationError(
                    "BILLING_JWT_SECRET is required when BILLING_ENV=production"
                )
            return replace(self, jwt_secret=DEVELOPMENT_JWT_SECRET)
        if len(self.jwt_secret) < 32:
            raise ConfigurationError(
                "BILLING_JWT_SECRET must be at least 32 characters"
            )
        self.postgres  # noqa: B018 - parse now, so a bad URL fails at start
        return self


@dataclass(frozen=True)
class PostgresParams:
    host: str
    port: int
    dbname: str
    user: str
    password: str = field(repr=False)

    @classmethod
    def from_url(cls, url: str) -> PostgresParams:
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres") or not parts.path.strip("/"):
            raise ConfigurationError(
                "DATABASE_URL must look like postgresql://user@host:5432/dbname"
            )
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            dbname=unquote(parts.path.lstrip("/")),
            user=unquote(parts.username or "postgres"),
            password=unquote(parts.password or ""),
        )


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _tenant_list(value: str) -> frozenset[str] | None:
    value = value.strip()
    if value == "*":
        return None
    return frozenset(t.strip() for t in value.split(",") if t.strip())


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"{name} must be a positive number, got {raw!r}")
    return value


def _whole(
    env: Mapping[str, str], name: str, default: int, *, allow_zero: bool = False
) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if _DIGITS.fullmatch(raw.strip()) is None or int(raw) < (0 if allow_zero else 1):
        kind = "non-negative" if allow_zero else "positive"
        raise ConfigurationError(f"{name} must be a {kind} whole number, got {raw!r}")
    return int(raw)


def _webhook_settings(env: Mapping[str, str], base: Settings) -> dict[str, Any]:
    return {
        "webhook_allow_private": _flag(env, "BILLING_WEBHOOK_ALLOW_PRIVATE"),
        "webhook_timeout_seconds": _number(
            env, "BILLING_WEBHOOK_TIMEOUT_SECONDS", base.webhook_timeout_seconds
        ),
        "webhook_max_attempts": _whole(
            env, "BILLING_WEBHOOK_MAX_ATTEMPTS", base.webhook_max_attempts
        ),
        "webhook_backoff_seconds": _number(
            env, "BILLING_WEBHOOK_BACKOFF_SECONDS", base.webhook_backoff_seconds
        ),
        "webhook_max_backoff_seconds": _number(
            env,
            "BILLING_WEBHOOK_MAX_BACKOFF_SECONDS",
            base.webhook_max_backoff_seconds,
        ),
        "webhook_recover_after_seconds": _number(
            env,
            "BILLING_WEBHOOK_RECOVER_AFTER_SECONDS",
            base.webhook_recover_after_seconds,
        ),
    }


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigurationError(f"{name} must be true or false, got {raw!r}")


def _read_key(value: str) -> str:
    """A PEM key given inline, or the path of a file holding it."""
    if value and not value.lstrip().startswith("-----") and Path(value).is_file():
        return Path(value).read_text()
    return value
