"""`mureka-etl`: register ids, sync, query, and run the demo against the embedded simulator."""

import argparse
import os
import sys
from pathlib import Path

from rich.console import Console

from pipelines.config import DEFAULT_BASE_URL, INGEST_BATCH_RECORDS, Home, utcnow

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)


def cmd_simulator(args: argparse.Namespace) -> int:
    from pipelines.useapi import simulator

    return simulator.main(args.extra)


def cmd_dev(args: argparse.Namespace) -> int:
    from pipelines import dev

    return dev.run(port=args.port, simulator_jobs=args.simulator_jobs)


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


def cmd_ingest(args: argparse.Namespace) -> int:
    from pipelines.ingest import IngestBar, ingest

    home = Home.from_env()
    batch_records = args.batch_size or INGEST_BATCH_RECORDS
    if args.quiet:
        report = ingest(home, args.files, stdin=sys.stdin.buffer, batch_records=batch_records)
    else:
        with IngestBar() as bar:
            report = ingest(home, args.files, stdin=sys.stdin.buffer, batch_records=batch_records, progress=bar)
    for bad in report.bad_lines:
        errors.print(f"skipped {bad}", markup=False, highlight=False)
    if report.bad_count > len(report.bad_lines):
        errors.print(f"... and {report.bad_count - len(report.bad_lines)} more bad lines", highlight=False)
    for error in report.source_errors:
        errors.print(f"error: {error}", markup=False, highlight=False)
    states = ", ".join(f"{state} {count}" for state, count in sorted(report.by_state.items()))
    console.print(
        f"ingested {report.records} records ({states or 'none'}) over {len(report.days)} days in"
        f" {report.seconds:.1f} s; bad lines {report.bad_count}", highlight=False
    )
    return EXIT_FAILED if report.bad_count or report.source_errors else EXIT_OK


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
    from rich.markup import escape

    from pipelines.query import QueryError, connect_readonly, list_relations, render, run_query

    home = Home.from_env()
    con = connect_readonly(home)
    try:
        if args.list:
            for name, kind, columns in list_relations(con):
                described = ", ".join(f"{column} {data_type}" for column, data_type in columns)
                console.print(f"[bold]{escape(name)}[/bold] ({kind}): {escape(described)}", highlight=False)
            return EXIT_OK
        try:
            sql = _read_sql(args)
        except OSError as error:
            errors.print(f"error: cannot read the SQL file: {error}", markup=False, highlight=False)
            return EXIT_USAGE
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


def cmd_report(args: argparse.Namespace) -> int:
    from pipelines.report import write_home_report

    summary = write_home_report(Home.from_env(), utcnow(), Path(args.out) if args.out else None)
    console.print(f"Report: {summary.path}", highlight=False)
    return EXIT_OK


def cmd_webhook(args: argparse.Namespace) -> int:
    from pipelines.webhook.receiver import WebhookConfigError, reply_url, serve, webhook_secret

    try:
        secret = webhook_secret()
        if args.webhook_command == "url":
            print(reply_url(args.base, secret))
            return EXIT_OK
    except WebhookConfigError as error:
        errors.print(f"error: {error}", markup=False, highlight=False)
        return EXIT_USAGE
    try:
        serve(Home.from_env().ensure(), secret, host=args.host, port=args.port)
    except WebhookConfigError as error:
        errors.print(f"error: {error}", markup=False, highlight=False)
        return EXIT_FAILED
    return EXIT_OK


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

    p = sub.add_parser("dev", help="the Dagster UI and daemon on 127.0.0.1 (the embedded simulator without USEAPI_TOKEN)")
    p.add_argument("--port", type=int, default=3000, help="UI port on 127.0.0.1 (default 3000)")
    p.add_argument("--simulator-jobs", type=int, default=500, help="jobs the embedded simulator serves (default 500)")
    p.set_defaults(func=cmd_dev)

    ids = sub.add_parser("ids", help="the registry of known job ids").add_subparsers(dest="ids_command", required=True)
    p = ids.add_parser("add", help="register job ids from files (text, CSV with a jobid column, JSON lines) or - for stdin")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=cmd_ids_add)

    p = sub.add_parser("ingest", help="load saved job records (JSON lines, gzip ok) or - for stdin: registry, lake, warehouse")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--batch-size", type=int, help=f"records per batch (bounds memory; default {INGEST_BATCH_RECORDS})")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=cmd_ingest)

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

    p = sub.add_parser("report", help="write the HTML report (charts of volume, failures, durations, latency, capture)")
    p.add_argument("--out", help="where to write it (default $MUREKA_ETL_HOME/report.html)")
    p.set_defaults(func=cmd_report)
    hooks = sub.add_parser("webhook", help="receive useapi.net webhook deliveries (replyUrl) into the spool")
    hooks = hooks.add_subparsers(dest="webhook_command", required=True)
    p = hooks.add_parser("serve", help="serve POST /hooks/mureka/$MUREKA_WEBHOOK_SECRET (uvicorn) until Ctrl-C")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; put a TLS proxy in front)")
    p.add_argument("--port", type=int, default=8787, help="port (default 8787)")
    p.set_defaults(func=cmd_webhook)
    p = hooks.add_parser("url", help="print the replyUrl to give the create endpoints")
    p.add_argument("--base", required=True, help="the public base URL of your proxy, e.g. https://example.org")
    p.set_defaults(func=cmd_webhook)
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
