"""Domain and application errors as HTTP answers, in one place.

Every error body is `{"status_code": ..., "detail": ...}`; the detail names the
field where there is one. Unexpected errors answer 500 with no trace.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from application.audit.writer import AuditUnavailable
from application.metering.app import ConcurrentCorrection, UsageNotFound
from application.metering.batch import MalformedBatch, field_error
from application.metering.corrections import (
    CorrectionMismatch,
    InvalidCorrection,
    LedgerBehind,
)
from application.notifying.addresses import InvalidWebhookUrl
from application.notifying.endpoints import InvalidDeliveryQuery, NoWebhook
from application.price_book import (
    BudgetNeedsPriceBook,
    InvalidBudget,
    InvalidEffectiveFrom,
    NoBudget,
    NoPriceBook,
)
from application.projecting.rebuild import RebuildInProgress
from application.serving.recorded import NotReplayable
from domain.periods import InvalidPeriod
from domain.price_book import CurrencyChanged
from domain.pricing import InvalidPriceBook
from domain.tenant_settings import InvalidSettings
from domain.usage import UsageError
from interfaces.http.params import InvalidParameter
from projections.audit_log.reader import InvalidAuditQuery
from projections.history import InvalidCut
from projections.usage_daily.query import InvalidUsageQuery

log = logging.getLogger(__name__)


class BadRequest(HTTPException):
    status_code = 400


class UnknownProjection(LookupError):
    """No read model of that name."""


def _error(
    status: int, detail: str, headers: dict[str, str] | None = None
) -> Response[Any]:
    return Response(
        {"status_code": status, "detail": detail}, status_code=status, headers=headers
    )


def malformed_batch(_: Request[Any, Any, Any], exc: MalformedBatch) -> Response[Any]:
    return _error(413 if exc.too_large else 400, str(exc))


def invalid_body(
    _: Request[Any, Any, Any], exc: msgspec.ValidationError
) -> Response[Any]:
    return _error(400, field_error(str(exc)))


def undecodable_body(
    _: Request[Any, Any, Any], exc: msgspec.DecodeError
) -> Response[Any]:
    return _error(400, f"body: is not valid JSON ({exc})")


def bad_request(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    return _error(400, str(exc))


def unprocessable(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    return _error(422, str(exc))


def not_found(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    return _error(404, str(exc))


def conflict(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    return _error(409, str(exc))


def retry_later(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    return _error(503, str(exc), {"Retry-After": "2"})


def audit_unavailable(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Logged where it failed (with the cause's type); the caller is not told
    the database's own words."""
    return _error(
        503,
        "audit record not written, so nothing was served; retry shortly",
        {"Retry-After": "2"},
    )


DATABASE_RETRY_AFTER = "5"


def database_unavailable(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """PostgreSQL unreachable, or too slow: no connection within the pool wait
    (PoolTimeout), a broken or refused connection, a statement timeout
    (QueryCanceled). Logged once, by type only (messages may name hosts)."""
    log.error("database unavailable: %s", type(exc).__name__)
    return _error(
        503,
        "the database is unavailable; retry shortly",
        {"Retry-After": DATABASE_RETRY_AFTER},
    )


def invalid_parameters(
    _: Request[Any, Any, Any], exc: ValidationException
) -> Response[Any]:
    """Litestar's own validation of a JSON body or parameter: name the field."""
    problems = exc.extra if isinstance(exc.extra, list) else []
    first = problems[0] if problems and isinstance(problems[0], dict) else {}
    message = str(first.get("message", ""))
    if " - at `$" in message:  # msgspec's "Expected ..., got ... - at `$.path`"
        return _error(400, field_error(message))
    if first.get("key") and message:
        return _error(400, f"{first['key']}: {message[:1].lower()}{message[1:]}")
    return _error(400, str(exc.detail))


def unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Log the trace for us; tell the caller nothing about the internals."""
    if isinstance(exc, HTTPException):  # Litestar's own 4xx/5xx pass through as is
        return Response(
            {"status_code": exc.status_code, "detail": exc.detail},
            status_code=exc.status_code,
            headers=exc.headers,
        )
    log.error(
        "unhandled error",
        exc_info=exc,
        extra={"request_id": request.scope.get("state", {}).get("request_id")},
    )
    return _error(500, "Internal Server Error")


EXCEPTION_HANDLERS: dict[type[Exception], Any] = {
    Exception: unexpected,
    ValidationException: invalid_parameters,
    MalformedBatch: malformed_batch,
    msgspec.ValidationError: invalid_body,
    msgspec.DecodeError: undecodable_body,
    InvalidCorrection: unprocessable,
    InvalidSettings: unprocessable,
    InvalidPriceBook: unprocessable,
    InvalidEffectiveFrom: unprocessable,
    CurrencyChanged: conflict,
    NoPriceBook: not_found,
    NoBudget: not_found,
    InvalidBudget: unprocessable,
    BudgetNeedsPriceBook: conflict,
    InvalidPeriod: bad_request,
    InvalidUsageQuery: bad_request,
    InvalidAuditQuery: bad_request,
    InvalidParameter: bad_request,
    InvalidCut: bad_request,
    NotReplayable: conflict,
    InvalidWebhookUrl: unprocessable,
    InvalidDeliveryQuery: bad_request,
    NoWebhook: not_found,
    UsageNotFound: not_found,
    UnknownProjection: not_found,
    UsageError: conflict,
    ConcurrentCorrection: conflict,
    CorrectionMismatch: conflict,
    RebuildInProgress: conflict,
    LedgerBehind: retry_later,
    AuditUnavailable: audit_unavailable,
    psycopg.OperationalError: database_unavailable,
    OperationalError: database_unavailable,
    InterfaceError: database_unavailable,
}
