"""What a batch is made of and what it reports, shared by the agent, the processor and the
metrics (so that none of them imports another for its types)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from db.queries import ErrorRow


@dataclass(frozen=True)
class Message:
    value: Optional[bytes]
    partition: int = -1
    offset: int = -1
    timestamp: Optional[float] = None  # Kafka message timestamp, seconds since the epoch


@dataclass
class BatchReport:
    size: int
    classified: int
    failed: int
    seconds: dict[str, float] = field(default_factory=dict)
    error_types: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)  # key sent -> row written, per image


DeadLetterSink = Callable[[list[tuple[Message, "ErrorRow"]]], Awaitable[None]]
