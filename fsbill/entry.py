"""Console entry point. The commands that run greenlets over sockets have gevent patch the
standard library before anything imports socket, threading or the PostgreSQL driver (psycopg
only cooperates when imported after): fsbill.cli.main does it before importing their module."""


def main() -> None:
    from fsbill.cli.main import main as cli_main

    raise SystemExit(cli_main())
