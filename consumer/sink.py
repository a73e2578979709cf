"""A batch's rows into PostgreSQL: one transaction when the database takes them all; when it
refuses a row (a data error, not an outage), the rows are written one by one so that the
one bad row becomes an error row and its neighbours are still classified."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Optional, Protocol

import psycopg2

from common.errors import ErrorType, TransientError, VisionScalingError, pg_error_is_transient
from consumer.messages import Message
from db.queries import ErrorRow, Prediction, ShadowPrediction, write_batch

log = logging.getLogger(__name__)


Refused = list[tuple[Message, ErrorRow]]


class RowSink(Protocol):
    def write(
        self,
        predictions: list[tuple[Message, Prediction]],
        failures: list[tuple[Message, ErrorRow]],
        shadows: Sequence[ShadowPrediction] = (),
    ) -> Refused:
        """Write all rows or raise TransientError; returns the messages whose row was refused,
        each with the error row recorded for it instead."""

    def close(self) -> None: ...


class RowsRefused(VisionScalingError):
    """PostgreSQL answered, and refused these rows for what they contain."""


class RowWriter:
    """Owns the worker's database connection (opened on first use, reopened after an outage)."""

    def __init__(self, connect: Callable):
        self.connect = connect
        self._conn = None

    def _write(
        self, predictions: list[Prediction], errors: list[ErrorRow], shadows: Sequence[ShadowPrediction] = ()
    ) -> None:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = self.connect()
            write_batch(self._conn, predictions, errors, shadows)
        except psycopg2.Error as exc:
            if pg_error_is_transient(exc):
                self.close()
                raise TransientError(f"PostgreSQL unavailable: {str(exc).strip()}") from exc
            raise RowsRefused(f"{type(exc).__name__} [{exc.pgcode}]: {str(exc).strip()}"[:1000]) from exc

    def write(
        self,
        predictions: list[tuple[Message, Prediction]],
        failures: list[tuple[Message, ErrorRow]],
        shadows: Sequence[ShadowPrediction] = (),
    ) -> list[tuple[Message, ErrorRow]]:
        """Write everything; returns the messages whose row was refused, with the error row
        recorded for them instead (TransientError when the database is unreachable). Shadow
        rows are not the record of anything: when the batch is refused they are left out."""
        try:
            self._write([p for _, p in predictions], [e for _, e in failures], shadows)
            return []
        except RowsRefused as exc:
            log.warning("batch of %d rows refused (%s); writing them one by one", len(predictions) + len(failures), exc)
        refused: list[tuple[Message, ErrorRow]] = []
        for m, row in [*predictions, *failures]:
            try:
                self._write([row], []) if isinstance(row, Prediction) else self._write([], [row])
            except RowsRefused as exc:
                refused.append(
                    (
                        m,
                        ErrorRow(
                            row.image_key,
                            row.model,
                            ErrorType.INTERNAL,
                            f"PostgreSQL refused the row: {exc}",
                            row.hostname,
                        ),
                    )
                )
        for m, err in refused:
            try:
                self._write([], [err])
            except RowsRefused as exc:  # not even an error row: the dead-letter topic is its record
                log.error(
                    "no row could be written for %r (partition %d offset %d): %s; it goes to "
                    "the dead-letter topic only",
                    err.image_key[:200],
                    m.partition,
                    m.offset,
                    exc,
                )
        return refused

    def close(self) -> None:
        conn: Optional[object] = self._conn
        self._conn = None
        if conn is not None:
            try:
                conn.close()
            except psycopg2.Error:
                pass
