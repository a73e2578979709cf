"""A batch's messages sorted into what the worker does with them: keys to classify, objects
removed, records skipped or refused, and how many of each arrived from each source.

Sources: `producer` (a bare key: `python -m producer`, its --from-bucket reconciliation, or
anything writing keys to the topic) and `notification` (an S3 event, consumer/notifications).
Only ObjectCreated events of the worker's own bucket (S3_BUCKET) are classified; an event
for another bucket is refused before any GET ("bucket not allowed"), under the error key
`s3://BUCKET/KEY` so it can never be mistaken for a key of the worker's bucket.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from common.errors import ErrorType, ImageError
from common.keys import error_key, stored_key
from consumer.messages import Message
from consumer.notifications import Notification, ObjectEvent, read_message
from db.events import KeyEvent


@dataclass
class Intake:
    work: list[tuple[Message, str]] = field(default_factory=list)  # keys to GET and classify
    events: list[KeyEvent] = field(default_factory=list)  # registered with the batch's rows
    failures: list[tuple[Message, str, ImageError]] = field(default_factory=list)  # (message, error key, why)
    arrivals: Counter = field(default_factory=Counter)  # (source, kind) -> n


def sort_batch(messages: Sequence[Message], bucket: str) -> Intake:
    intake = Intake()
    for m in messages:
        reading = read_message(m.value, f"at partition {m.partition} offset {m.offset}")
        if isinstance(reading, str):
            intake.work.append((m, reading))
            intake.arrivals["producer", "key"] += 1
        elif isinstance(reading, Notification):
            _add_notification(intake, m, reading, bucket)
        else:
            looks_like_json = bool(m.value) and m.value[:1] == b"{"
            intake.failures.append((m, error_key(m.value, m.partition, m.offset), reading))
            intake.arrivals["notification" if looks_like_json else "producer", "refused"] += 1
    return intake


def _add_notification(intake: Intake, m: Message, note: Notification, bucket: str) -> None:
    intake.arrivals["notification", "skipped"] += note.skipped  # test events, other event types, folders
    for reason in note.refused:
        intake.failures.append((m, error_key(m.value, m.partition, m.offset), _bad(f"S3 notification: {reason}")))
        intake.arrivals["notification", "refused"] += 1
    for event in note.events:
        if event.bucket != bucket:
            detail = f"bucket not allowed: {event.bucket!r} (this worker reads S3_BUCKET={bucket!r})"
            intake.failures.append((m, stored_key(f"s3://{event.bucket}/{event.key}"), _bad(detail)))
            intake.arrivals["notification", "refused"] += 1
            continue
        intake.events.append(_key_event(event))
        if event.created:
            intake.work.append((m, event.key))
            intake.arrivals["notification", "key"] += 1
        else:
            intake.arrivals["notification", "removed"] += 1


def _key_event(event: ObjectEvent) -> KeyEvent:
    return KeyEvent(event.key, event.stamp, event.etag, event.size, removed=not event.created)


def _bad(detail: str) -> ImageError:
    return ImageError(ErrorType.BAD_MESSAGE, detail)
