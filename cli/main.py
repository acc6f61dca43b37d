"""`mureka-etl`: register ids, sync, ingest, query, report, and run the demo against the embedded simulator.

Every failure ends in `main()`: one line `error: ...` on stderr and a non-zero exit code; `--verbose` adds the
traceback. SIGTERM stops a command as Ctrl-C does (exit 143 and 130).
"""

import argparse
import os
import signal
import sys
import textwrap
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from cli.stopping import StopSignals, exit_code
from pipelines.config import (
    DEFAULT_BASE_URL,
    DEFAULT_HOME,
    DEMO_HOME,
    DEMO_MARKER,
    HOME_ENV,
    INGEST_BATCH_RECORDS,
    Home,
    utcnow,
)

if TYPE_CHECKING:  # imported where used: dagster takes a second to import, which --help need not pay
    from assets.resources import MurekaApiResource

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)

EXIT_CODES = """exit codes:
  0    done
  1    the command failed: one line on stderr says why (--verbose adds the traceback)
  2    wrong usage, or a home that does not exist
  130  stopped by Ctrl-C (SIGINT)
  143  stopped by SIGTERM"""
HOME_HELP = f"the home folder (default: ${HOME_ENV}, else ./{DEFAULT_HOME})"
ENV_HOME = f"  {HOME_ENV}  the home folder when --home is not given (default ./{DEFAULT_HOME})"
ENV_API = (
    "  USEAPI_TOKEN     the useapi.net API token (user:<digits>-...); never printed or stored\n"
    f"  USEAPI_BASE_URL  the API's base URL (default {DEFAULT_BASE_URL})"
)


class CliError(Exception):
    """A command that cannot do its job for a reason the user can fix; `code` is the exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def cmd_simulator(args: argparse.Namespace) -> int:
    from simulator import server as simulator

    return simulator.main(args.extra)


def cmd_dev(args: argparse.Namespace) -> int:
    from cli import dev

    return dev.run(Home.locate(args.home), port=args.port, simulator_jobs=args.simulator_jobs)


def cmd_ids(args: argparse.Namespace) -> int:
    args.ids_parser.print_help()
    return EXIT_USAGE


def cmd_ids_add(args: argparse.Namespace) -> int:
    from pipelines.idfiles import read_many
    from pipelines.registry import open_registry

    home = Home.locate(args.home).ensure()
    now = utcnow()
    batch, file_errors = read_many(args.files, anchor=now, stdin=sys.stdin.buffer)
    with open_registry(home) as registry:
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
    from pipelines.ingest import BAR_STAGES, ingest
    from pipelines.progress import BarProgress

    home = Home.locate(args.home)
    batch_records = args.batch_size or INGEST_BATCH_RECORDS
    if args.quiet:
        report = ingest(home, args.files, stdin=sys.stdin.buffer, batch_records=batch_records)
    else:
        with BarProgress(stages=BAR_STAGES) as bar:
            report = ingest(home, args.files, stdin=sys.stdin.buffer, batch_records=batch_records, progress=bar.stage)
    if os.environ.get("DAGSTER_HOME"):  # the UI's instance: the ingested days show as materialized partitions
        from assets.ingest_events import record_ingest

        recorded = record_ingest(home, report)
        console.print(f"recorded {len(recorded)} days in the Dagster catalog", highlight=False)
    for bad in report.bad_lines:
        errors.print(f"skipped {bad}", markup=False, highlight=False)
    if report.bad_count > len(report.bad_lines):
        errors.print(f"... and {report.bad_count - len(report.bad_lines)} more bad lines", highlight=False)
    for error in report.source_errors:
        errors.print(f"error: {error}", markup=False, highlight=False)
    states = ", ".join(f"{state} {count}" for state, count in sorted(report.by_state.items()))
    console.print(
        f"ingested {report.records} records ({states or 'none'}) over {len(report.days)} days in"
        f" {report.seconds:.1f} s; bad lines {report.bad_count}",
        highlight=False,
    )
    return EXIT_FAILED if report.bad_count or report.source_errors else EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from pipelines import summary

    home = existing_home(args.home)
    summary.print_registry_status(console, home, utcnow())
    return EXIT_OK


def api_from_env(concurrency: int | None = None) -> "MurekaApiResource":
    """The API resource of `sync` and `audit`: USEAPI_BASE_URL, and USEAPI_TOKEN through `dg.EnvVar` so that the
    token never becomes part of a run's config. Exit 2 when no token is set."""
    import dagster as dg

    from assets.resources import MurekaApiResource

    if not os.environ.get("USEAPI_TOKEN"):
        raise CliError(
            "USEAPI_TOKEN is not set. Export your useapi.net API token (user:<digits>-...) first.", EXIT_USAGE
        )
    extra = {} if concurrency is None else {"concurrency": concurrency}
    return MurekaApiResource(
        base_url=os.environ.get("USEAPI_BASE_URL", DEFAULT_BASE_URL), token=dg.EnvVar("USEAPI_TOKEN"), **extra
    )


def cmd_sync(args: argparse.Namespace) -> int:
    from assets.runner import run_capture
    from pipelines import summary

    api = api_from_env(args.concurrency)
    home = Home.locate(args.home)
    run = run_capture(home, api, bar=not args.quiet)
    summary.print_run(console, home, run)
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    from assets.runner import run_feeds
    from pipelines.feeds import audit_table
    from pipelines.query import QueryResult, render

    api = api_from_env()
    home = Home.locate(args.home)
    run = run_feeds(home, api, full=args.full, max_pages=args.max_pages)
    columns, rows = audit_table(home)
    sys.stdout.write(render(QueryResult(columns, rows), "table"))
    per_account = ", ".join(f"{account} {n}" for account, n in sorted(run.requests_by_account.items()))
    console.print(
        f"requests: {run.requests} (GET /jobs, then feed pages per account: {per_account or 'none'})", highlight=False
    )
    for message in [*run.unavailable.values(), *run.errors]:
        errors.print(f"error: {message}", markup=False, highlight=False)
    for name, passed, description in run.checks:
        console.print(
            f"check {name}: {'passed' if passed else 'FAILED'}" + (f": {description}" if description else ""),
            markup=False,
            highlight=False,
        )
    return EXIT_FAILED if run.unavailable or run.errors or not all(passed for _, passed, _ in run.checks) else EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from cli.demo import run_demo

    return run_demo(console, _home_of(args).root, jobs=args.jobs, seed=args.seed)


def cmd_query(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from pipelines.query import connect_readonly, list_relations, render, run_query

    home = existing_home(args.home)
    try:
        sql = None if args.list else _read_sql(args)
    except OSError as error:
        raise CliError(f"cannot read the SQL file: {error}", EXIT_USAGE) from error
    if sql is not None and not sql.strip():
        raise CliError("no SQL given (an argument, -f FILE, or stdin)", EXIT_USAGE)
    con = connect_readonly(home)
    try:
        if sql is None:
            for name, kind, columns in list_relations(con):
                described = ", ".join(f"{column} {data_type}" for column, data_type in columns)
                console.print(f"[bold]{escape(name)}[/bold] ({kind}): {escape(described)}", highlight=False)
            return EXIT_OK
        sys.stdout.write(render(run_query(con, sql), args.format))
        return EXIT_OK
    finally:
        con.close()


def cmd_report(args: argparse.Namespace) -> int:
    from pipelines.report import write_home_report

    home = existing_home(args.home)
    out = Path(args.out).resolve() if args.out else None
    if out is not None and out.is_dir():
        raise CliError(f"--out {out} is a folder: give a file name, e.g. {out / 'report.html'}", EXIT_USAGE)
    if out is not None and not out.parent.is_dir():
        raise CliError(f"--out: the folder {out.parent} does not exist (create it first)", EXIT_USAGE)
    summary = write_home_report(home, utcnow(), out)
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
        serve(Home.locate(args.home).ensure(), secret, host=args.host, port=args.port)
    except WebhookConfigError as error:
        errors.print(f"error: {error}", markup=False, highlight=False)
        return EXIT_FAILED
    return EXIT_OK


def existing_home(option: str | None) -> Home:
    """The home of a reading command: it must exist (nothing is created); a warning when it holds no job."""
    home = Home.locate(option)
    if not home.root.is_dir():
        raise CliError(
            f"home {home.root} does not exist: give --home or {HOME_ENV} (to start one: `mureka-etl ids add`,"
            f" `sync` or `ingest`; {_where_the_demo_is()})",
            EXIT_USAGE,
        )
    if not home.holds_captured_jobs():
        errors.print(
            f"warning: home {home.root} holds no captured job yet; {_where_the_demo_is()}",
            markup=False,
            highlight=False,
        )
    return home


def _where_the_demo_is() -> str:
    demo = Path(DEMO_HOME).resolve()
    if (demo / DEMO_MARKER).exists():
        return f"the demo's data is in {demo} (--home {demo})"
    return f"`mureka-etl demo` writes its data to {demo}"


def _read_sql(args: argparse.Namespace) -> str:
    if args.file:
        return Path(args.file).read_text(encoding="utf-8")
    if args.sql and args.sql != "-":
        return args.sql
    return sys.stdin.read()


def at_least(minimum: int):
    """An argparse type: an integer >= minimum, checked when the command line is read."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    # --home and --verbose are accepted before or after the command; SUPPRESS keeps a command's default from
    # overwriting the value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", default=argparse.SUPPRESS, metavar="PATH", help=HOME_HELP)
    common.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")

    parser = argparse.ArgumentParser(
        prog="mureka-etl",
        description=textwrap.fill(
            "Keep every useapi.net Mureka job record before the API forgets it (7 days): register job ids, fetch"
            " them (sync) or load saved records (ingest), then query and report over the lake and warehouse.",
            100,
        ),
        epilog=f"environment:\n{ENV_HOME}\n{ENV_API}\n\n{EXIT_CODES}\nRun `mureka-etl COMMAND --help` for a command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--home", default=None, metavar="PATH", help=HOME_HELP)
    parser.add_argument("--verbose", action="store_true", help="show tracebacks of failures")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, summary: str, description: str, env: str, *, parent=sub) -> argparse.ArgumentParser:
        epilog = f"environment:\n{env}\n\n{EXIT_CODES}" if env else EXIT_CODES
        return parent.add_parser(
            name,
            help=summary,
            description=textwrap.fill(description, 100),
            epilog=epilog,
            parents=[common],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    # The simulator parses its own options (see `mureka-etl simulator --help`).
    p = sub.add_parser("simulator", help="serve the embedded API simulator on 127.0.0.1", add_help=False)
    p.set_defaults(func=cmd_simulator)

    p = command(
        "dev",
        "the Dagster UI and daemon on 127.0.0.1",
        "Run the Dagster UI and daemon (`dagster dev`) on 127.0.0.1 with a persistent instance in"
        " <home>/dagster_home. Without USEAPI_TOKEN it serves the embedded simulator and drops its ids into"
        " <home>/inbox. Ctrl-C or SIGTERM stops every process it started.",
        f"{ENV_HOME}\n{ENV_API}",
    )
    p.add_argument("--port", type=at_least(1), default=3000, help="UI port on 127.0.0.1 (default 3000)")
    p.add_argument(
        "--simulator-jobs",
        type=at_least(1),
        default=500,
        help="jobs the embedded simulator serves without USEAPI_TOKEN (default 500)",
    )
    p.set_defaults(func=cmd_dev)

    ids_parser = command(
        "ids",
        "the registry of known job ids",
        "The registry of known job ids. `mureka-etl ids add FILE...` registers ids.",
        ENV_HOME,
    )
    ids_parser.set_defaults(func=cmd_ids, ids_parser=ids_parser)
    ids = ids_parser.add_subparsers(dest="ids_command", metavar="IDS_COMMAND")
    p = command(
        "add",
        "register job ids from files or stdin",
        "Register job ids from files: plain text (one id a line), CSV with a jobid column, JSON lines or a"
        " JSON array of records; gzip is read as such; - reads stdin. Ids that do not parse (malformed, a job"
        " type the API does not issue, an impossible date) are rejected with file and line.",
        ENV_HOME,
        parent=ids,
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="id files, or - for stdin")
    p.set_defaults(func=cmd_ids_add)

    p = command(
        "ingest",
        "load saved job records: registry, lake, warehouse",
        "Load saved job records (JSON lines of GET /jobs/{jobid} answers, gzip ok; - reads stdin) into the"
        " registry, the lake and the warehouse. Bad lines are skipped and named with file and line (exit 1).",
        ENV_HOME,
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="record files, or - for stdin")
    p.add_argument(
        "--batch-size", type=at_least(1), help=f"records per batch (bounds memory; default {INGEST_BATCH_RECORDS})"
    )
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=cmd_ingest)

    p = command(
        "status",
        "ids by state, due now, at risk of expiry, lost",
        "Show the registry: ids by state, due now, at risk of expiry (< 24 h left, not final), lost. The home"
        " must exist (exit 2 otherwise); nothing is created.",
        ENV_HOME,
    )
    p.set_defaults(func=cmd_status)

    p = command(
        "sync",
        "fetch every due job from the API, then load the warehouse",
        "Fetch every due job id (nearest deadline first) from USEAPI_BASE_URL with USEAPI_TOKEN, archive the"
        " answers, flatten them into the lake and load the warehouse: one in-process Dagster run. With"
        " DAGSTER_HOME set the run joins that instance's history.",
        f"{ENV_HOME}\n{ENV_API}",
    )
    p.add_argument("--concurrency", type=at_least(1), default=16, help="parallel requests, at least 1 (default 16)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sync)

    p = command(
        "audit",
        "scan every account's song and speech feed and audit the captured jobs against it",
        "Scan what is new in every account's music and speech feeds (GET /music, GET /speech), archive and load"
        " it, and print the audit: feed items matched by a captured job, lost, or with no known job. Runs the"
        " Dagster job feeds_job in-process. Exits 1 when a check fails, an account answers 596 or a feed kept"
        " failing.",
        f"{ENV_HOME}\n{ENV_API}",
    )
    p.add_argument("--full", action="store_true", help="page every feed to its end (default: only what is new)")
    p.add_argument("--max-pages", type=at_least(1), help="requests per account and feed in this run (default 50)")
    p.set_defaults(func=cmd_audit)

    p = command(
        "demo",
        "the whole pipeline on the embedded simulator, in a home of its own",
        f"Run the whole pipeline against the embedded simulator in a home of its own (--home, default"
        f" ./{DEMO_HOME}), wiped first if a previous demo made it; a folder the demo did not make is refused."
        " Reads no environment variable: the demo serves its own API.",
        "",
    )
    p.add_argument("--jobs", type=at_least(1), default=3000, help="simulated jobs over 10 days (default 3000)")
    p.add_argument("--seed", type=int, default=7, help="seed of the simulated jobs (default 7)")
    p.set_defaults(func=cmd_demo)

    p = command(
        "query",
        "run read-only SQL over the tables and views",
        "Run read-only SQL over the tables and views (read from the lake: never waits on a running sync)."
        " The home must exist (exit 2 otherwise); nothing is created.",
        ENV_HOME,
    )
    p.add_argument("sql", nargs="?", help="SQL text, or - to read stdin")
    p.add_argument("-f", "--file", help="read SQL from a file")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format (default table)")
    p.add_argument("--list", action="store_true", help="list tables and views with their columns")
    p.set_defaults(func=cmd_query)

    p = command(
        "report",
        "write the HTML report",
        "Write the HTML report: daily volume, failure rates, song durations, latency, capture health. The home"
        " must exist (exit 2 otherwise).",
        ENV_HOME,
    )
    p.add_argument(
        "--out", metavar="FILE", help="where to write it; its folder must exist (default <home>/report.html)"
    )
    p.set_defaults(func=cmd_report)
    env_secret = "  MUREKA_WEBHOOK_SECRET  the secret path segment of the hook URL (required; never printed)"
    hooks_parser = command(
        "webhook",
        "receive useapi.net webhook deliveries (replyUrl) into the spool",
        "Receive the deliveries useapi.net POSTs to a job's replyUrl: `webhook serve` runs the receiver,"
        " `webhook url` prints the replyUrl to give the create endpoints.",
        f"{ENV_HOME}\n{env_secret}",
    )
    hooks = hooks_parser.add_subparsers(dest="webhook_command", metavar="WEBHOOK_COMMAND", required=True)
    p = command(
        "serve",
        "serve POST /hooks/mureka/$MUREKA_WEBHOOK_SECRET until Ctrl-C",
        "Serve POST /hooks/mureka/$MUREKA_WEBHOOK_SECRET (ASGI on uvicorn): each delivery is written and fsynced"
        " to <home>/webhook/spool before it is answered 200; the capture run confirms it with one GET.",
        f"{ENV_HOME}\n{env_secret}",
        parent=hooks,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; put a TLS proxy in front)")
    p.add_argument("--port", type=at_least(1), default=8787, help="port (default 8787)")
    p.set_defaults(func=cmd_webhook)
    p = command(
        "url",
        "print the replyUrl to give the create endpoints",
        "Print the replyUrl (base URL + /hooks/mureka/<secret>) to pass to the create endpoints.",
        env_secret,
        parent=hooks,
    )
    p.add_argument("--base", required=True, help="the public base URL of your proxy, e.g. https://example.org")
    p.set_defaults(func=cmd_webhook)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if extra and args.command != "simulator":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    with StopSignals() as stop:
        try:
            code = args.func(args)
        except KeyboardInterrupt:
            code = exit_code(stop.received() or signal.SIGINT)
        except Exception as error:  # noqa: BLE001 - every failure ends here, in one line
            code = None if stop.received() else _report_failure(error, args.verbose, _home_of(args))
        signum = stop.received()
    if signum is not None:
        # Whatever the stop left behind (a failed run, an interrupted write) is a consequence, not the cause.
        errors.print(f"stopped by {signal.Signals(signum).name}", highlight=False)
        return exit_code(signum)
    return code


def _home_of(args: argparse.Namespace) -> Home:
    """The home the command works in (the demo's own by default)."""
    return Home.locate(args.home or (DEMO_HOME if args.command == "demo" else None))


def _report_failure(error: Exception, verbose: bool, home: Home) -> int:
    """Print `error: <why>` (and with --verbose the traceback first); return the exit code."""
    if verbose:
        detail = getattr(error, "detail", "")
        errors.print(detail or "".join(traceback.format_exception(error)), markup=False, highlight=False)
    message, code = _known(error, home) or (
        f"{type(error).__name__}: {_one_line(str(error))} (rerun with --verbose for the traceback)",
        EXIT_FAILED,
    )
    errors.print(f"error: {message}", markup=False, highlight=False)
    return code


def _known(error: Exception, home: Home) -> tuple[str, int] | None:
    """(message, exit code) of a failure whose cause is known; None for anything else. `home` names where a
    failure that carries no path of its own happened (a full disk, a busy registry)."""
    if isinstance(error, CliError):
        return _one_line(str(error)), error.code
    if isinstance(error, _loaded(("cli.demo", "DemoHomeError"))):
        return _one_line(str(error)), EXIT_USAGE
    if isinstance(error, _loaded(*FAILURES)):
        return _one_line(str(error)), EXIT_FAILED
    if isinstance(error, OSError) and error.strerror:
        where = " -> ".join(str(name) for name in (error.filename, error.filename2) if name is not None)
        return f"{error.strerror}: {where or home.root}", EXIT_FAILED
    if isinstance(error, _loaded(("sqlite3", "OperationalError"))) and "locked" in str(error):
        return (
            f"the registry {home.registry_path} is busy (database is locked): another process holds its write"
            " lock; try again when it is done",
            EXIT_FAILED,
        )
    if isinstance(error, _loaded(("sqlite3", "Error"))):
        return f"registry: {_one_line(str(error))}", EXIT_FAILED
    if isinstance(error, _loaded(("duckdb", "Error"))):
        return f"DuckDB: {_one_line(str(error))}", EXIT_FAILED
    if isinstance(error, _loaded(("pyarrow", "ArrowException"))):
        return f"unreadable data: {_one_line(str(error))}", EXIT_FAILED
    return None


# Errors whose message already says what went wrong and what to do: printed as they are.
FAILURES = (
    ("assets.runner", "RunFailedError"),
    ("pipelines.query", "QueryError"),
    ("pipelines.registry", "RegistryError"),
    ("pipelines.warehouse", "WarehouseLockedError"),
    ("pipelines.lake", "LakeLockTimeout"),
    ("pipelines.idfiles", "IdFileError"),
    ("pipelines.jobids", "InvalidJobId"),
)


def _loaded(*names: tuple[str, str]) -> tuple[type, ...]:
    """The named exception classes of the modules already imported (an error cannot come from one that is not)."""
    found = (getattr(sys.modules.get(module), name, None) for module, name in names)
    return tuple(cls for cls in found if isinstance(cls, type))


def _one_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), text.strip() or "(no message)")


if __name__ == "__main__":
    sys.exit(main())
