"""Image keys as they travel: from a Kafka message's bytes to a key, and to the bounded
form a key takes in PostgreSQL.

PostgreSQL's btree index refuses rows over about 2.7 KB, and S3 allows 1,024-byte keys,
while a Kafka message can carry a megabyte. A key longer than MAX_STORED_KEY_BYTES is
stored as its first bytes (cut on a character boundary) plus a hash of the whole key, so
two different long keys never collapse into one row and a redelivery maps to the same row.
"""

from __future__ import annotations

import hashlib
from typing import Union

from common.errors import ErrorType, ImageError

MAX_STORED_KEY_BYTES = 1024  # S3's own key limit: every real key is stored as it is
_HASH_MARK = "…#sha256:"


def stored_key(key: str) -> str:
    """`key` itself when it fits, else its prefix + `…#sha256:<hex>` within the limit."""
    raw = key.encode("utf-8", errors="surrogatepass")
    if len(raw) <= MAX_STORED_KEY_BYTES:
        return key
    digest = hashlib.sha256(raw).hexdigest()
    room = MAX_STORED_KEY_BYTES - len((_HASH_MARK + digest).encode("utf-8"))
    head = raw[:room].decode("utf-8", errors="ignore")  # drops a character cut in half
    return head + _HASH_MARK + digest


def parse_key(value: bytes | None, where: str = "") -> Union[str, ImageError]:
    """The image key carried by a message value, or the reason it carries none."""
    if not value:
        return ImageError(ErrorType.BAD_MESSAGE, f"empty message {where}".strip())
    try:
        key = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return ImageError(ErrorType.BAD_MESSAGE, f"message is not UTF-8 ({exc})")
    if "\x00" in key:  # PostgreSQL text cannot hold NUL
        return ImageError(ErrorType.BAD_MESSAGE, "message contains a NUL byte")
    if len(value) > MAX_STORED_KEY_BYTES:  # S3 refuses it anyway: no request for it
        return ImageError(ErrorType.BAD_KEY, f"key of {len(value)} bytes exceeds S3's {MAX_STORED_KEY_BYTES}")
    return key


def error_key(value: bytes | None, partition: int = -1, offset: int = -1) -> str:
    """A readable, unique, bounded key for a message that carries no usable image key."""
    if value:
        text = value.decode("utf-8", errors="backslashreplace").replace("\x00", "\\x00")
        return stored_key(text)
    return f"<empty message p{partition}@{offset}>"
