"""The local services the pipeline needs, each one module with the same interface:
`NAME`, `start(cfg)`, `stop(cfg) -> bool` (False: it was not running), `running(cfg)` and
`pid(cfg)` (for CPU accounting).
Adding a service is one module and one line here; `infra.stack` loops over them."""

from __future__ import annotations

from types import ModuleType

from infra import kafka, postgres, versitygw
from infra.process import StackConfig, StackError, free_port, port_open  # noqa: F401 - the stack's vocabulary

# in start order (stopped in reverse): the database, the broker, the object store
SERVICES: dict[str, ModuleType] = {m.NAME: m for m in (postgres, kafka, versitygw)}
