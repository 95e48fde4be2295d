"""Console entry point. gevent must patch the standard library before anything imports
socket, threading or the PostgreSQL driver (psycopg only cooperates when imported after)."""

from gevent import monkey

monkey.patch_all()


def main() -> None:
    from fsbill.cli.main import main as cli_main

    raise SystemExit(cli_main())
