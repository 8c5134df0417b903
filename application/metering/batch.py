"""Reading a batch of metering events: body shape, per-event fields, rules."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec

from domain.metering_rules import EventRejected, validate_usage_event
from domain.values import UsageFacts

PropertyValue = str | int | float | bool | None
Status = Literal["accepted", "duplicate", "conflict", "rejected"]


QUANTITY_GRAMMAR = r"^[0-9]+(\.[0-9]+)?$"


class MeteringEventIn(msgspec.Struct):
    """One metering event as a producer sends it (the tenant comes from the token)."""

    id: str
    workspace_id: str
    product_area: str
    quantity: Annotated[
        str,
        msgspec.Meta(
            pattern=QUANTITY_GRAMMAR,
            description="ASCII digits with at most one decimal point (no sign,"
            " exponent, separators or spaces); a JSON number written the same"
            " way is read exactly too",
            examples=["12.5"],
        ),
    ]
    unit: str
    timestamp: datetime
    properties: dict[str, PropertyValue] = {}


class _WireEvent(MeteringEventIn):
    """What is decoded: the quantity stays raw JSON, so its text is checked."""

    quantity: msgspec.Raw  # type: ignore[assignment]


class EventResult(msgspec.Struct, omit_defaults=True):
    index: int
    id: str | None
    status: Status
    error: str | None = None


class IngestOut(msgspec.Struct):
    accepted: int
    duplicates: int
    conflicts: int
    rejected: int
    position: int
    results: list[EventResult]
    # Pass to a read as `min_positions` to see these events (read-your-writes).
    min_positions: str = ""


class MalformedBatch(ValueError):
    """The body as a whole is unusable; nothing in it is recorded."""

    def __init__(self, field: str, message: str, *, too_large: bool = False) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.too_large = too_large


@dataclass(frozen=True, slots=True)
class Candidate:
    """An event that passed every rule, at its index in the batch."""

    index: int
    facts: UsageFacts


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    event_id: str | None
    error: str


_batch_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_event_decoder = msgspec.json.Decoder(_WireEvent)
_text_decoder = msgspec.json.Decoder(str)
_AT_PATH = re.compile(r"^(?P<message>.*) - at `\$(?P<path>[^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`")


def decode_batch(body: bytes, max_events: int) -> list[msgspec.Raw]:
    """Split a JSON array body into its raw elements, or refuse the whole body."""
    if not body.strip():
        raise MalformedBatch("body", "must be a JSON array of events, got nothing")
    _check_is_utf8(body)
    try:
        items = _batch_decoder.decode(body)
    except msgspec.ValidationError:
        _check_is_json(body)
        raise MalformedBatch("body", "must be a JSON array of events") from None
    except msgspec.DecodeError as e:
        raise MalformedBatch("body", f"is not valid JSON ({e})") from None
    except RecursionError:
        raise MalformedBatch("body", TOO_DEEP) from None
    if not items:
        raise MalformedBatch("body", "must contain at least one event")
    if len(items) > max_events:
        raise MalformedBatch(
            "body",
            f"must contain at most {max_events} events, got {len(items)}",
            too_large=True,
        )
    return items


TOO_DEEP = "is nested too deeply to be a batch of flat events"


def _check_is_utf8(body: bytes) -> None:
    """JSON is UTF-8: anything else is refused whole (msgspec would raise later,
    one event at a time, with an error that is not ours)."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedBatch(
            "body",
            f"is not valid JSON (invalid UTF-8: byte {body[e.start]:#04x}"
            f" at offset {e.start})",
        ) from None


def _check_is_json(body: bytes) -> None:
    try:
        msgspec.json.decode(body)
    except msgspec.DecodeError as e:
        raise MalformedBatch("body", f"is not valid JSON ({e})") from None
    except RecursionError:
        raise MalformedBatch("body", TOO_DEEP) from None


def read_events(
    items: list[msgspec.Raw],
    *,
    now: datetime,
    acceptance_window: timedelta,
    backfill: bool = False,
    decode: Callable[[msgspec.Raw], _WireEvent] = _event_decoder.decode,
) -> tuple[list[Candidate], list[Rejection]]:
    """Check each event against its shape and the rules, keeping input order."""
    candidates: list[Candidate] = []
    rejections: list[Rejection] = []
    for index, raw in enumerate(items):
        try:
            event = decode(raw)
            quantity = quantity_text(event.quantity)
        except msgspec.ValidationError as e:
            rejections.append(Rejection(index, _id_of(raw), field_error(str(e))))
            continue
        except RecursionError:
            rejections.append(Rejection(index, _id_of(raw), f"event: {TOO_DEEP}"))
            continue
        try:
            facts = validate_usage_event(
                event_id=event.id,
                workspace_id=event.workspace_id,
                product_area=event.product_area,
                unit=event.unit,
                quantity=quantity,
                timestamp=event.timestamp,
                properties=event.properties,
                now=now,
                acceptance_window=acceptance_window,
                backfill=backfill,
            )
        except EventRejected as e:
            rejections.append(Rejection(index, event.id, str(e)))
            continue
        candidates.append(Candidate(index, facts))
    return candidates, rejections


def quantity_text(raw: msgspec.Raw) -> str:
    """The quantity as written: a JSON string's content, or a number's literal."""
    literal = bytes(raw)
    if literal.startswith(b'"'):
        try:
            return _text_decoder.decode(literal)
        except msgspec.DecodeError:  # already decoded once as part of the event
            raise msgspec.ValidationError("Invalid string - at `$.quantity`") from None
    if literal[:1].isdigit() or literal.startswith(b"-"):
        return literal.decode("ascii")
    raise msgspec.ValidationError(
        "Expected a decimal string or number - at `$.quantity`"
    )


def field_error(message: str) -> str:
    """Turn msgspec's error text into `field: problem`."""
    missing = _MISSING.match(message)
    if missing:
        return f"{missing['name']}: is required"
    located = _AT_PATH.match(message)
    if located:
        path = located["path"].lstrip(".").split("[")[0] or "event"
        text = located["message"]
        return f"{path}: {text[:1].lower()}{text[1:]}"
    if message.startswith("Expected `object`"):
        return "event: must be a JSON object"
    return f"event: {message}"


class _IdOnly(msgspec.Struct):
    id: Any = None


_id_decoder = msgspec.json.Decoder(_IdOnly)


def _id_of(raw: msgspec.Raw) -> str | None:
    """The event's id for its rejection, whatever else in it is broken."""
    try:
        event_id = _id_decoder.decode(raw).id
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    return event_id if isinstance(event_id, str) else None
