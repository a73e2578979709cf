"""python -m consumer.status [--json] — how far the fleet is, from Kafka and PostgreSQL.

Per partition: the consumer group's committed offset, the end offset and the lag; the
group's state and members; per host: images written in the last minute and in total;
errors by type; keys still without a row; how keys arrived, per source (S3 notifications:
keys, removals, records skipped (test events and the like), events refused or stale; the
producer: keys).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional

from common.kafka_admin import kafka_status
from common.reach import Unreachable, check_kafka
from db.connection import in_transaction
from db.queries import progress
from settings import Settings, get_settings


def database_status(settings: Settings) -> dict:
    return in_transaction(settings, lambda conn: progress(conn, settings.model_name))


def render(status: dict) -> str:
    k, d = status["kafka"], status["database"]
    lines = [f"topic {k['topic']}, group {k['group']}"]
    if "error" in k:
        lines.append(f"  {k['error']}")
    else:
        lines.append(f"  group {k['group_state']}, {len(k['members'])} member(s): {', '.join(k['members']) or '-'}")
        lines.append(f"  {'partition':>9} {'committed':>10} {'end':>10} {'lag':>8}")
        for r in k["partitions"]:
            committed = "-" if r["committed"] is None else r["committed"]
            lines.append(f"  {r['partition']:>9} {committed:>10} {r['end']:>10} {r['lag']:>8}")
        lines.append(f"  total lag {k['total_lag']}")
    lines.append(
        f"model {d['model']}: {d['results_total']} classified, {d['errors_total']} errors, "
        f"{d['keys_without_row']} of {d['registered_keys']} registered keys without a row"
    )
    lines.append(f"  {'host':<24} {'last min':>9} {'total':>9}")
    for h in d["hosts"]:
        lines.append(f"  {h['hostname']:<24} {h['last_minute']:>9} {h['total']:>9}")
    for error_type, n in d["errors"].items():
        lines.append(f"  errors {error_type}: {n}")
    for source, kinds in d.get("arrivals", {}).items():
        lines.append(f"  arrived by {source}: " + ", ".join(f"{n} {kind}" for kind, n in kinds.items()))
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m consumer.status", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    args = ap.parse_args(argv)
    settings = get_settings()
    try:
        check_kafka(settings)
    except Unreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    status = {"kafka": kafka_status(settings), "database": database_status(settings)}
    print(json.dumps(status, indent=2) if args.json else render(status))
    return 0


if __name__ == "__main__":
    from common import cli

    cli.run(main)
