"""What a message on the image topic says: a bare image key (the producer's), or an S3 event
notification in one of the forms users meet, each holding one or more object events.

Forms, told apart by their shape (no setting needed):

| form        | recognised by                                    | object key as sent             |
| ----------- | ------------------------------------------------ | ------------------------------ |
| AWS         | `Records[]`, `eventName` like `ObjectCreated:Put`| form-URL-encoded: `+` is space |
| versitygw   | `Records[]`, `eventName` with an `s3:` prefix    | raw: the key as it is          |
| MinIO       | top-level `EventName`, `eventSource` minio:s3    | Go QueryEscape (`/` is `%2F`)  |
| EventBridge | `detail-type` and `detail.object.key`            | form-URL-encoded, as AWS       |
| SNS         | `Type: Notification` wrapping one of the above   | that of the wrapped form       |

Decoding every form as AWS's would corrupt keys holding a literal `+` or `%41`: versitygw
sends them raw. Test events (`s3:TestEvent`, sent when notifications are configured and by
versitygw at its start) are skipped, as are event types that are neither a creation nor a
removal (restores, tagging, lifecycle transitions) and folder markers (keys ending in `/`). A
value that is a JSON object but none of these forms is refused with its reason; any other
UTF-8 text is a bare key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Optional, Union
from urllib.parse import unquote_plus

from common.errors import ErrorType, ImageError
from common.keys import parse_key

SEQUENCER_WIDTH = 32  # AWS: compare sequencers of one key after right-padding with zeros


@dataclass(frozen=True)
class ObjectEvent:
    """One object created or removed, as the notification told it."""

    bucket: str
    key: str
    created: bool  # False: removed
    name: str  # the event type without prefix, e.g. ObjectCreated:Put
    form: str  # aws | versitygw | minio | eventbridge
    size: Optional[int] = None
    etag: Optional[str] = None  # without quotes
    version_id: Optional[str] = None
    sequencer: str = ""
    time: str = ""  # ISO 8601, as sent

    @property
    def stamp(self) -> str:
        """A string that orders two events of this key (compare as strings); empty when the
        form carries no sequencer.

        AWS (and EventBridge, MinIO): the hexadecimal sequencer right-padded with zeros, as
        AWS documents. versitygw: its sequencer is a hexadecimal counter without padding
        ("9", "A", "10") that starts again at 1 when the gateway restarts, and its eventTime
        has whole seconds, so the stamp is the time, then the counter left-padded: within a
        second the counter decides, across a restart the time does."""
        if not self.sequencer:
            return ""
        if self.form == "versitygw":
            try:
                return f"{_utc(self.time)}|{int(self.sequencer, 16):0{SEQUENCER_WIDTH}X}"
            except ValueError:
                pass
        return self.sequencer.upper().ljust(SEQUENCER_WIDTH, "0")


@dataclass
class Notification:
    """The object events a notification message holds, the records skipped (test events,
    other event types) and the records refused, each with its reason."""

    events: list[ObjectEvent] = field(default_factory=list)
    skipped: int = 0
    refused: list[str] = field(default_factory=list)


Reading = Union[str, Notification, ImageError]


def read_message(value: Optional[bytes], where: str = "") -> Reading:
    """A bare key, a Notification, or an ImageError (bad_message) when the value is neither."""
    if value and value[:1] == b"{":
        try:
            doc = json.loads(value)
        except ValueError:
            doc = None  # "{draft}.jpg" is a key, not broken JSON
        if isinstance(doc, dict):
            return read_notification(doc)
    return parse_key(value, where)


def read_notification(doc: dict[str, Any]) -> Union[Notification, ImageError]:
    if doc.get("Type") == "Notification" and isinstance(doc.get("Message"), str):  # SNS envelope
        try:
            inner = json.loads(doc["Message"])
        except ValueError:
            return _bad("an SNS notification whose Message is not JSON")
        return read_notification(inner) if isinstance(inner, dict) else _bad("an SNS Message that is not an object")
    if _is_test_event(doc):
        return Notification(skipped=1)
    if isinstance(doc.get("detail"), dict) and "detail-type" in doc:
        return _collect([doc], _eventbridge_record)
    records = doc.get("Records")
    if isinstance(records, list):
        return _collect(records, _s3_record)
    return _bad(f"a JSON object that is neither a key nor an S3 event notification (fields: {_fields(doc)})")


def _is_test_event(doc: dict[str, Any]) -> bool:
    return str(doc.get("Event", "")).removeprefix("s3:") == "TestEvent" and "Records" not in doc


def _collect(records: list, read_one) -> Notification:
    out = Notification()
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            out.refused.append(f"record {i} is not an object")
            continue
        try:
            event = read_one(record)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            out.refused.append(f"record {i}: {_reason(exc)}")
            continue
        if event is None:
            out.skipped += 1
        else:
            out.events.append(event)
    if not records:
        out.refused.append("a notification with no records")
    return out


def _s3_record(r: dict[str, Any]) -> Optional[ObjectEvent]:
    """A record of AWS's, versitygw's or MinIO's `Records` list."""
    raw_name = _text(r, "eventName")
    prefixed = raw_name.startswith("s3:")
    name = raw_name.removeprefix("s3:")
    if name == "TestEvent":
        return None
    source = str(r.get("eventSource", ""))
    form = "minio" if source.startswith("minio") else "versitygw" if prefixed else "aws"
    s3 = r["s3"]
    obj = s3["object"]
    if form == "versitygw":
        bucket, key = _versitygw_object(s3)
    else:  # MinIO QueryEscapes (space -> +), AWS form-encodes (space -> +)
        bucket, key = _text(s3["bucket"], "name"), unquote_plus(_text(obj, "key"), errors="strict")
    return _event(bucket, key, name, form, obj, r.get("eventTime"))


_VERSITYGW_ARN = "arn:aws:s3:::/"


def _versitygw_object(s3: dict[str, Any]) -> tuple[str, str]:
    """Bucket and key of a versitygw record, read from its bucket ARN ("arn:aws:s3:::/BUCKET/KEY")
    where it has that shape. versitygw v1.8.0 builds `bucket.name` and `object.key` as views
    into a request buffer that the next request reuses before the event is serialised, so under
    concurrent PUTs a record can name another object's key (seen: 1 in 500 PUTs from 16 threads);
    the ARN is formatted, a copy, while the request is handled. Other shapes: the fields."""
    arn = s3["bucket"].get("arn")
    if isinstance(arn, str) and arn.startswith(_VERSITYGW_ARN) and "/" in arn[len(_VERSITYGW_ARN) :]:
        bucket, key = arn[len(_VERSITYGW_ARN) :].split("/", 1)
        if bucket and key:
            return bucket, key
    return _text(s3["bucket"], "name"), _text(s3["object"], "key")


def _eventbridge_record(doc: dict[str, Any]) -> Optional[ObjectEvent]:
    kinds = {"Object Created": "ObjectCreated", "Object Deleted": "ObjectRemoved"}
    kind = kinds.get(str(doc.get("detail-type")))
    detail = doc["detail"]
    obj = detail["object"]
    key = unquote_plus(_text(obj, "key"), errors="strict")
    reason = str(detail.get("reason", ""))
    name = f"{kind}:{reason}" if kind else str(doc.get("detail-type"))
    obj = {
        "size": obj.get("size"),
        "eTag": obj.get("etag"),
        "versionId": obj.get("version-id"),
        "sequencer": obj.get("sequencer"),
    }
    return _event(_text(detail["bucket"], "name"), key, name, "eventbridge", obj, doc.get("time"))


def _event(bucket: str, key: str, name: str, form: str, obj: dict, time: Any) -> Optional[ObjectEvent]:
    if key.endswith("/"):
        return None  # a folder marker (what consoles create for "New folder"): never an image
    if name.startswith("ObjectCreated"):
        created = True
    elif name.startswith("ObjectRemoved"):
        created = False
    else:
        return None  # restores, tagging, lifecycle: nothing to classify or mark
    checked = parse_key(key.encode("utf-8", "surrogatepass"))
    if isinstance(checked, ImageError):
        raise ValueError(f"object key: {checked.detail}")
    size = obj.get("size")
    etag = obj.get("eTag")
    return ObjectEvent(
        bucket=bucket,
        key=key,
        created=created,
        name=name,
        form=form,
        size=int(size) if isinstance(size, (int, str)) and str(size).isdigit() else None,
        etag=str(etag).strip('"') if etag else None,
        version_id=str(obj["versionId"]) if obj.get("versionId") else None,
        sequencer=str(obj.get("sequencer") or ""),
        time=str(time or ""),
    )


def _utc(time: str) -> str:
    """An ISO 8601 time in UTC, fixed width (versitygw writes its local zone's offset)."""
    try:
        return datetime.fromisoformat(time).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return time


def _text(d: dict, name: str) -> str:
    value = d[name]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} is {value!r}, not a non-empty string")
    return value


def _fields(doc: dict) -> str:
    return ", ".join(sorted(map(str, doc))[:8])[:200] or "none"


def _reason(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"no {exc.args[0]!r} field"
    return str(exc)[:300]


def _bad(detail: str) -> ImageError:
    return ImageError(ErrorType.BAD_MESSAGE, detail)
