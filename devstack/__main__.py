"""Command line of the embedded stack: ``python -m devstack {up,down,status,health,env,warehouse-url,upload,demo,
dbt,trigger,reset,clean,report}``.

The Makefile calls these; they can be called directly from the project's virtualenv too.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from devstack import fetch_gold_report
from devstack.commands import clean, down, env, health, reset, run_dbt, status, trigger, up, upload, warehouse_url
from devstack.demo import demo
from devstack.faults import STACK_ERRORS, stack_fault
from devstack.postgres import PostgresNotAvailable
from devstack.stack import Stack
from devstack.warehouse import OWNER_ROLE


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run the command: what each does is in commands.py, demo.py, fetch_gold_report.py."""
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("--home", type=Path, default=None, help="state directory (default: .devstack/)")
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("up", help="start PostgreSQL, moto and the Airflow services; print the UI login")
    start.add_argument(
        "--trigger",
        choices=["sensor", "events"],
        default="sensor",
        help="how uploads are detected: the S3 sensor (default) or S3 event notifications through SQS",
    )
    commands.add_parser("health", help="check the pipeline like a monitor would; exit 0 OK, 1 WARNING, 2 CRITICAL")
    commands.add_parser("down", help="stop everything the stack started")
    commands.add_parser("status", help="say what is running")
    commands.add_parser("env", help="print the stack's Airflow settings as shell exports")
    url = commands.add_parser("warehouse-url", help="print a libpq URL of the warehouse")
    url.add_argument(
        "--role", default=OWNER_ROLE, choices=[OWNER_ROLE, "retail_loader", "retail_transformer", "postgres"]
    )
    up_load = commands.add_parser("upload", help="put a file under incoming/ of the bucket")
    up_load.add_argument("path", type=Path)
    run = commands.add_parser("demo", help="load a workbook (default: the generated sample) end to end")
    run.add_argument("--workbook", type=Path, default=None)
    dbt = commands.add_parser("dbt", help="run dbt against the warehouse: python -m devstack dbt -- ls")
    dbt.add_argument("dbt_args", nargs=argparse.REMAINDER)
    by_hand = commands.add_parser("trigger", help="trigger retail_ingest_file for one key (services running)")
    by_hand.add_argument("key")
    commands.add_parser("reset", help="empty the warehouse and the bucket (keeps the virtualenvs and settings)")
    commands.add_parser("clean", help="stop everything and delete the PostgreSQL cluster if it lives outside")
    fetch_gold_report.add_parser(commands)
    args = parser.parse_args(argv)

    stack = Stack(args.home) if args.home else Stack()
    # A SIGTERM (a CI timeout, `kill`) ends the command as Ctrl-C does: the demo then fails its own run.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if args.command == "up":
            return up(stack, args.trigger)
        elif args.command == "health":
            return health(stack)
        elif args.command == "down":
            down(stack)
        elif args.command == "status":
            status(stack)
        elif args.command == "env":
            env(stack)
        elif args.command == "warehouse-url":
            warehouse_url(stack, args.role)
        elif args.command == "upload":
            upload(stack, args.path)
        elif args.command == "demo":
            return demo(stack, args.workbook)
        elif args.command == "dbt":
            return run_dbt(stack, [arg for arg in args.dbt_args if arg != "--"] or ["--help"])
        elif args.command == "report":
            return fetch_gold_report.run(stack, args)
        elif args.command == "trigger":
            return trigger(stack, args.key)
        elif args.command == "reset":
            reset(stack)
        elif args.command == "clean":
            clean(stack)
    except PostgresNotAvailable as error:
        print(f"devstack: {error}", file=sys.stderr)
        return 3
    except STACK_ERRORS as error:
        print(f"devstack {args.command}: {stack_fault(stack, error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"devstack {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    sys.exit(main())
