"""python -m viewer [--host H] [--port P] — the web viewer (VIEWER_HOST / VIEWER_PORT).

Reads PostgreSQL (read-only sessions; VIEWER_DATABASE_URL, else DATABASE_URL) and S3 for the
images; served by waitress, a production WSGI server."""

from __future__ import annotations

import argparse
import logging
import sys

from settings import get_settings


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m viewer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--host", help="default: VIEWER_HOST (127.0.0.1)")
    ap.add_argument("--port", type=int, help="default: VIEWER_PORT (8080)")
    args = ap.parse_args(argv)
    settings = get_settings()
    args.host = args.host or settings.viewer_host
    args.port = settings.viewer_port if args.port is None else args.port
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from waitress import serve

    from viewer.app import create_app

    print(f"viewer on http://{args.host}:{args.port}/ (model {settings.model_name})", flush=True)
    serve(create_app(settings), host=args.host, port=args.port, threads=8)
    return 0


if __name__ == "__main__":
    sys.exit(main())
