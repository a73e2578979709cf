"""Whether Kafka can be reached, said once, at once, and in words a user can act on.

librdkafka retries a broker it cannot reach many times a second and logs each try: a command
started with the stack down used to print hundreds of `Connect ... failed` lines and then a
traceback (issue 27 has the count). Here:

- `check_kafka(settings)`: one metadata request within a few seconds; if it fails, an
  `Unreachable` naming the service, its address (the setting that holds it) and what to
  check: nothing listening, a name that does not resolve, TLS, or SASL credentials. The
  command-line tools call it first and print its message as their one line.
- `kafka_config(settings)`: the confluent-kafka options of every client, with librdkafka's log
  lines sent to the `librdkafka` logger, where each kind of line is logged at most once per
  `QUIET_S` with a count of those held back: a worker that loses a broker it had reached keeps
  retrying, without the flood.
- `quiet(prefix)`: the same for a library's loggers (the worker's aiokafka and Faust transport).
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from common.errors import ServiceUnreachable
from settings import Settings

QUIET_S = 30.0  # a repeated librdkafka line is logged again after this long
LOGGER = "librdkafka"


class Unreachable(ServiceUnreachable, ConnectionError):
    """A service the command needs cannot be reached; the message says which, where, and what to check."""


class OncePerInterval(logging.Filter):
    """Lets a record through when its kind (the message with its numbers blanked) was last let
    through more than `interval` seconds ago; says how many were held back in between."""

    def __init__(self, interval: float = QUIET_S):
        super().__init__()
        self.interval = interval
        self._seen: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        kind = re.sub(r"\d+", "#", record.getMessage())
        now = time.monotonic()
        with self._lock:
            last, held = self._seen.get(kind, (-1e18, 0))
            if now - last < self.interval:
                self._seen[kind] = (last, held + 1)
                return False
            self._seen[kind] = (now, 0)
        if held:
            record.msg = f"{record.getMessage()} ({held} more like it in the last {now - last:.0f} s)"
            record.args = ()
        return True


_logger = logging.getLogger(LOGGER)
_logger.addFilter(OncePerInterval())


def quiet(prefix: str, interval: float = QUIET_S) -> list[str]:
    """Let each kind of line of every logger already made under `prefix` (a library's, e.g.
    aiokafka's reconnection lines in a worker that lost a broker) through once per `interval`,
    with the count held back. Returns the loggers so quieted."""
    names = [n for n in list(logging.root.manager.loggerDict) if n == prefix or n.startswith(prefix + ".")]
    shared = OncePerInterval(interval)
    for name in names:
        target = logging.getLogger(name)
        if not any(isinstance(f, OncePerInterval) for f in target.filters):
            target.addFilter(shared)
    return names


def kafka_config(settings: Settings) -> dict:
    """settings.kafka_client_config() with librdkafka's lines on the rate-limited logger."""
    return {**settings.kafka_client_config(), "logger": _logger}


def check_kafka(settings: Settings, timeout: float = 5.0) -> None:
    """Raise Unreachable unless a broker of KAFKA_BOOTSTRAP_SERVERS answers within `timeout`."""
    errors: list[KafkaError] = []
    lines = _Lines()
    silent = logging.getLogger(f"{LOGGER}.check.{id(lines)}")
    silent.propagate = False  # the check's own retries are summed up in its one message
    silent.addHandler(lines)
    config = {**settings.kafka_client_config(), "logger": silent, "error_cb": errors.append}
    try:
        try:
            admin = AdminClient(config)
        except KafkaException as exc:  # librdkafka refused its settings, e.g. a CA file it cannot read
            raise Unreachable(refused_settings(settings, exc.args[0])) from None
        admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        errors.append(exc.args[0])
        admin.poll(0.2)  # librdkafka hands its queued log lines to the logger when polled
        raise Unreachable(describe(settings, errors, lines.seen)) from None
    finally:
        silent.removeHandler(lines)


def refused_settings(settings: Settings, error: KafkaError) -> str:
    text = error.str()
    if "ssl.ca.location" in text:
        return (
            f"cannot use KAFKA_SSL_CAFILE={settings.kafka_ssl_cafile}: {text.split(': ', 1)[-1]}; is it a PEM "
            "certificate this user may read?"
        )
    return f"the Kafka client refused its settings: {text}; check the KAFKA_* settings"


class _Lines(logging.Handler):
    """The last few distinct librdkafka lines of a check (what "failed" means is in them)."""

    def __init__(self):
        super().__init__()
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message not in self.seen and len(self.seen) < 20:
            self.seen.append(message)


def describe(settings: Settings, errors: list[KafkaError], lines: list[str] = ()) -> str:
    where = f"Kafka at {settings.kafka_bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS)"
    codes = {e.code() for e in errors}
    text = " ".join([*(e.str() for e in errors), *lines])
    if KafkaError._AUTHENTICATION in codes or "SASL" in text and "auth" in text.lower():
        return (
            f"{where} refused the credentials: SASL authentication failed; check KAFKA_SASL_USERNAME, "
            "KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM"
        )
    if KafkaError._SSL in codes or "SSL handshake" in text or "certificate" in text:
        return (
            f"cannot reach {where} over TLS: {_first(errors, 'SSL')}; check KAFKA_SSL_CAFILE and "
            "KAFKA_SECURITY_PROTOCOL"
        )
    if KafkaError._RESOLVE in codes or "resolve" in text:
        return f"cannot reach {where}: the host name does not resolve; check KAFKA_BOOTSTRAP_SERVERS for a typo"
    if settings.kafka_security_protocol == "PLAINTEXT" and "refused" not in text and _listening(settings):
        return (
            f"{where} accepts connections but does not answer in plaintext: if the cluster needs TLS or "
            "SASL, set KAFKA_SECURITY_PROTOCOL (e.g. SASL_SSL), KAFKA_SSL_CAFILE and the KAFKA_SASL_* credentials"
        )
    reason = "connection refused (nothing listening there)" if "refused" in text else "no broker answered"
    return (
        f"cannot reach {where}: {reason}; is Kafka running (`python -m infra.stack up` starts the local "
        "stack), and is the address right?"
    )


def _listening(settings: Settings) -> bool:
    """Whether the first bootstrap address accepts a TCP connection at all."""
    host, _, port = settings.kafka_bootstrap_servers.split(",")[0].strip().rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=1):
            return True
    except (OSError, ValueError):
        return False


def _first(errors: list[KafkaError], word: str) -> str:
    for e in errors:
        if word in e.str():
            return e.str().split(": ", 1)[-1][:200]
    return errors[-1].str()[:200] if errors else "no answer"
