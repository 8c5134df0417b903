"""A faster eventsourcing Mapper: plain JSON by msgspec, typed by the event class.

eventsourcing's default JSONTranscoder tags every Decimal, datetime and UUID in the
stored JSON and walks it with the stdlib json module; on the ingest and projection
hot paths that cost more than the database. This mapper stores plain JSON and
decodes it back through a msgspec Struct derived from the event class's own field
annotations, so types round-trip exactly (Decimal stays Decimal). It is plugged in
through eventsourcing's MAPPER_TOPIC, keeps cipher/compressor support and
class_version upcasting.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Mapper, MapperDeserialisationError, StoredEvent
from eventsourcing.utils import get_topic, resolve_topic
from msgspec.structs import asdict

_IDENTITY_FIELDS = ("originator_id", "originator_version")


class MsgspecMapper(Mapper[UUID]):
    """Maps domain events to stored events with msgspec (see module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._encoder = msgspec.json.Encoder()
        self._by_topic: dict[str, tuple[type, msgspec.json.Decoder[Any], int]] = {}

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        state = dict(vars(domain_event))
        originator_id = state.pop("originator_id")
        originator_version = state.pop("originator_version")
        class_version = getattr(type(domain_event), "class_version", 1)
        if class_version > 1:
            state["class_version"] = class_version
        data = self._encoder.encode(state)
        if self.compressor:
            data = self.compressor.compress(data)
        if self.cipher:
            data = self.cipher.encrypt(data)
        return StoredEvent(
            originator_id, originator_version, get_topic(type(domain_event)), data
        )

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        return self.decode(  # type: ignore[no-any-return]
            stored_event.topic,
            stored_event.state,
            stored_event.originator_id,
            stored_event.originator_version,
        )

    def decode(
        self, topic: str, data: bytes, originator_id: Any, originator_version: int
    ) -> Any:
        """The domain event stored with `topic` and `data` (no StoredEvent needed).

        The hot path of every projection: one dict lookup and one msgspec decode.
        """
        try:
            cls, decoder, class_version = self._by_topic[topic]
        except KeyError:
            cls, decoder, class_version = self._learn(topic)
        try:
            if self.cipher:
                data = self.cipher.decrypt(data)
            if self.compressor:
                data = self.compressor.decompress(data)
            if class_version == 1:
                state = asdict(decoder.decode(data))
            else:
                state = self._upcast(cls, decoder, class_version, data)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as e:
            msg = (
                f"Failed to deserialise stored event {topic} "
                f"{originator_id} v{originator_version}: {e}"
            )
            raise MapperDeserialisationError(msg) from e
        state["originator_id"] = originator_id
        state["originator_version"] = originator_version
        domain_event: Any = object.__new__(cls)
        object.__setattr__(domain_event, "__dict__", state)
        return domain_event

    def _learn(self, topic: str) -> tuple[type, msgspec.json.Decoder[Any], int]:
        cls = resolve_topic(topic)
        entry = (
            cls,
            msgspec.json.Decoder(event_schema(cls)),
            getattr(cls, "class_version", 1),
        )
        self._by_topic[topic] = entry
        return entry

    @staticmethod
    def _upcast(
        cls: type, decoder: msgspec.json.Decoder[Any], class_version: int, data: bytes
    ) -> dict[str, Any]:
        raw: dict[str, Any] = msgspec.json.decode(data)
        version = raw.pop("class_version", 1)
        while version < class_version:
            getattr(cls, f"upcast_v{version}_v{version + 1}")(raw)
            version += 1
        return asdict(msgspec.convert(raw, decoder.type, strict=False))


def event_schema(cls: type) -> type[msgspec.Struct]:
    """A msgspec Struct with the stored fields of an eventsourcing event class."""
    hints = typing.get_type_hints(cls)
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for f in dataclasses.fields(cls):
        if f.name in _IDENTITY_FIELDS:
            continue
        if f.default is not dataclasses.MISSING:
            fields.append((f.name, hints[f.name], f.default))
        else:
            fields.append((f.name, hints[f.name]))
    required = [f for f in fields if len(f) == 2]
    optional = [f for f in fields if len(f) == 3]
    return msgspec.defstruct(f"{cls.__qualname__}State", [*required, *optional])
