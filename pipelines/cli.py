"""`mureka-etl`: register ids, sync, query, and run the demo against the embedded simulator."""

import argparse
import os
import sys
from pathlib import Path

from rich.console import Console

from pipelines.config import DEFAULT_BASE_URL, Home, utcnow

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)


def cmd_simulator(args: argparse.Namespace) -> int:
    from pipelines.useapi import simulator

    return simulator.main(args.extra)


def cmd_ids_add(args: argparse.Namespace) -> int:
    from pipelines.idfiles import read_many
    from pipelines.registry import Registry

    home = Home.from_env().ensure()
    now = utcnow()
    batch, file_errors = read_many(args.files, anchor=now, stdin=sys.stdin.buffer)
    with Registry(home.registry_path) as registry:
        result = registry.add(batch.ids, source="cli:" + ",".join(args.files), now=now)
    for rejection in batch.rejections:
        errors.print(f"rejected {rejection}", markup=False, highlight=False)
    for error in file_errors:
        errors.print(f"error: {error}", markup=False, highlight=False)
    console.print(
        f"added {result.added}, already known {result.already_known + batch.duplicates_in_input}, "
        f"rejected {len(batch.rejections)}" + (f", unreadable files {len(file_errors)}" if file_errors else "")
    )
    return EXIT_FAILED if batch.rejections or file_errors else EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from pipelines import summary

    home = Home.from_env().ensure()
    summary.print_registry_status(console, home, utcnow())
    return EXIT_OK


def cmd_sync(args: argparse.Namespace) -> int:
    import dagster as dg

    from pipelines import summary
    from pipelines.resources import MurekaApiResource
    from pipelines.runner import RunFailedError, run_capture

    if not os.environ.get("USEAPI_TOKEN"):
        errors.print("error: USEAPI_TOKEN is not set. Export your useapi.net API token (user:<digits>-...) first.")
        return EXIT_USAGE
    home = Home.from_env()
    api = MurekaApiResource(
        base_url=os.environ.get("USEAPI_BASE_URL", DEFAULT_BASE_URL),
        token=dg.EnvVar("USEAPI_TOKEN"),
        concurrency=args.concurrency,
    )
    try:
        run = run_capture(home, api, bar=not args.quiet)
    except RunFailedError as error:
        errors.print(f"error: {error}", markup=False, highlight=False)
        return EXIT_FAILED
    summary.print_run(console, home, run)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from pipelines.demo import run_demo

    return run_demo(console, Path(args.home), jobs=args.jobs, seed=args.seed)


def cmd_query(args: argparse.Namespace) -> int:
    from pipelines.query import QueryError, connect_readonly, list_relations, render, run_query

    home = Home.from_env()
    con = connect_readonly(home)
    try:
        if args.list:
            for name, kind, columns in list_relations(con):
                console.print(f"[bold]{name}[/bold] ({kind}): {', '.join(columns)}", highlight=False)
            return EXIT_OK
        sql = _read_sql(args)
        if not sql.strip():
            errors.print("error: no SQL given (an argument, -f FILE, or stdin)")
            return EXIT_USAGE
        sys.stdout.write(render(run_query(con, sql), args.format))
        return EXIT_OK
    except QueryError as error:
        errors.print(f"error: {error}", markup=False, highlight=False)
        return EXIT_FAILED
    finally:
        con.close()


def _read_sql(args: argparse.Namespace) -> str:
    if args.file:
        return Path(args.file).read_text(encoding="utf-8")
    if args.sql and args.sql != "-":
        return args.sql
    return sys.stdin.read()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mureka-etl",
        description="Keep every useapi.net Mureka job record before the API forgets it (7 days). "
        "Home folder: $MUREKA_ETL_HOME (default ./data).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    # The simulator parses its own options (see `mureka-etl simulator --help`).
    p = sub.add_parser("simulator", help="serve the embedded API simulator on 127.0.0.1", add_help=False)
    p.set_defaults(func=cmd_simulator)

    ids = sub.add_parser("ids", help="the registry of known job ids").add_subparsers(dest="ids_command", required=True)
    p = ids.add_parser("add", help="register job ids from files (text, CSV with a jobid column, JSON lines) or - for stdin")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=cmd_ids_add)

    p = sub.add_parser("status", help="ids by state, due now, at risk of expiry, lost")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("sync", help="fetch every due job from USEAPI_BASE_URL with USEAPI_TOKEN, then load the warehouse")
    p.add_argument("--concurrency", type=int, default=16, help="parallel requests (default 16)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser("demo", help="run the whole pipeline on the embedded simulator, in its own home folder")
    p.add_argument("--home", default="demo", help="demo home folder, wiped first (default ./demo)")
    p.add_argument("--jobs", type=int, default=3000, help="simulated jobs over 10 days (default 3000)")
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("query", help="run read-only SQL over the tables and views")
    p.add_argument("sql", nargs="?", help="SQL text, or - to read stdin")
    p.add_argument("-f", "--file", help="read SQL from a file")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--list", action="store_true", help="list tables and views with their columns")
    p.set_defaults(func=cmd_query)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "simulator":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
