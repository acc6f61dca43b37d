"""`mureka-etl`: register ids, sync, ingest, query, report, and run the demo against the embedded simulator.

The commands are a click group. Every failure ends in `main()`: one line `error: ...` on stderr and a non-zero
exit code; `--verbose` adds the traceback. Wrong usage is click's: the usage line, a hint and `Error: ...`, exit 2.
SIGTERM stops a command as Ctrl-C does (exit 143 and 130).
"""

import signal
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click
from click.core import ParameterSource
from rich.console import Console

from cli.stopping import StopSignals, exit_code
from pipelines.config import DEMO_HOME, DEMO_MARKER, INGEST_BATCH_RECORDS, Home, utcnow
from pipelines.settings import BASE_URL, DEFAULT_BASE_URL, DEFAULT_HOME, HOME, TOKEN, Settings, SettingsError

if TYPE_CHECKING:  # imported where used: dagster takes a second to import, which --help need not pay
    from assets.resources import MurekaApiResource
    from pipelines.query import Format

PROG = "mureka-etl"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)

EXIT_CODES = """exit codes:
  0    done
  1    the command failed: one line on stderr says why (--verbose adds the traceback)
  2    wrong usage, a home that does not exist, or a setting missing or unusable
  130  stopped by Ctrl-C (SIGINT)
  143  stopped by SIGTERM"""
ENV_HOME = f"  {HOME}  the home folder when --home is not given (default ./{DEFAULT_HOME})"
ENV_API = (
    f"  {TOKEN}     the useapi.net API token (user:<digits>-...); never printed or stored\n"
    f"  {BASE_URL}  the API's base URL (default {DEFAULT_BASE_URL})"
)
ENV_SECRET = "  MUREKA_WEBHOOK_SECRET  the secret path segment of the hook URL (required; never printed)"
CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True, "max_content_width": 100}


def epilog(*environment: str) -> str:
    """The end of a command's --help: the environment variables it reads, then the exit codes (\\b: as written)."""
    read = "\b\nenvironment:\n" + "\n".join(environment) + "\n\n" if environment else ""
    return read + "\b\n" + EXIT_CODES


class CliError(Exception):
    """A command that cannot do its job for a reason the user can fix; `code` is the exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Invocation:
    """One run of `mureka-etl` (click's context object): what --home and --verbose said on the command line, the
    settings read from the environment, and the home the command works in once it is known."""

    home: str | None = None
    verbose: bool = False
    located: Home | None = None

    @cached_property
    def settings(self) -> Settings:
        return Settings.from_env()

    def locate(self, default: str | None = None) -> Home:
        """The command's home: --home, else `default` (the demo's own), else the settings' ($MUREKA_ETL_HOME, else
        ./data)."""
        self.located = Home.locate(self.home or default, self.settings)
        return self.located


F = TypeVar("F", bound=Callable[..., object])


def _keep(ctx: click.Context, param: click.Parameter, value: object) -> None:
    """Keep a shared option given on the command line; given before and after the command name, the later wins."""
    if param.name and ctx.get_parameter_source(param.name) is ParameterSource.COMMANDLINE:
        setattr(ctx.ensure_object(Invocation), param.name, value)


def shared_options(home_default: str = f"${HOME}, else ./{DEFAULT_HOME}") -> Callable[[F], F]:
    """--home and --verbose, declared by the group and by every command so that they go before or after the
    command name."""

    def declare(command: F) -> F:
        home = click.option(
            "--home",
            metavar="PATH",
            expose_value=False,
            callback=_keep,
            help=f"the home folder (default {home_default})",
        )
        verbose = click.option(
            "--verbose", is_flag=True, expose_value=False, callback=_keep, help="show tracebacks of failures"
        )
        return home(verbose(command))

    return declare


pass_invocation = click.make_pass_decorator(Invocation, ensure=True)


@click.group(
    PROG,
    epilog=epilog(ENV_HOME, ENV_API) + "\n\nRun `mureka-etl COMMAND --help` for a command.",
    context_settings=CONTEXT,
)
@shared_options()
def mureka_etl() -> None:
    """Keep every useapi.net Mureka job record before the API forgets it (7 days): register job ids, fetch them
    (sync) or load saved records (ingest), then query and report over the lake and warehouse."""


@mureka_etl.command(
    "simulator",
    short_help="serve the embedded API simulator on 127.0.0.1",
    add_help_option=False,
    context_settings={"ignore_unknown_options": True},
)
@click.argument("arguments", nargs=-1, type=click.UNPROCESSED)
def simulator_command(arguments: tuple[str, ...]) -> int:
    """The simulator parses its own options (`mureka-etl simulator --help`)."""
    from simulator import server

    return server.main(list(arguments))


@mureka_etl.command("dev", short_help="the Dagster UI and daemon on 127.0.0.1", epilog=epilog(ENV_HOME, ENV_API))
@click.option("--port", type=click.IntRange(1, 65535), default=3000, help="UI port on 127.0.0.1")
@click.option(
    "--simulator-jobs",
    type=click.IntRange(min=1),
    default=500,
    help="jobs the embedded simulator serves without USEAPI_TOKEN",
)
@shared_options()
@pass_invocation
def dev_command(invocation: Invocation, port: int, simulator_jobs: int) -> int:
    """Run the Dagster UI and daemon (`dagster dev`) on 127.0.0.1 with a persistent instance in
    <home>/dagster_home. Without USEAPI_TOKEN it serves the embedded simulator and drops its ids into
    <home>/inbox. Ctrl-C or SIGTERM stops every process it started."""
    from cli import dev

    return dev.run(invocation.locate(), invocation.settings, port=port, simulator_jobs=simulator_jobs)


@mureka_etl.group("ids", short_help="the registry of known job ids", epilog=epilog(ENV_HOME))
@shared_options()
def ids_group() -> None:
    """The registry of known job ids. `mureka-etl ids add FILE...` registers ids."""


@ids_group.command("add", short_help="register job ids from files or stdin", epilog=epilog(ENV_HOME))
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@shared_options()
@pass_invocation
def ids_add_command(invocation: Invocation, files: tuple[str, ...]) -> int:
    """Register job ids from files: plain text (one id a line), CSV with a jobid column, JSON lines or a JSON
    array of records; gzip is read as such; - reads stdin. Ids that do not parse (malformed, a job type the API
    does not issue, an impossible date) are rejected with file and line."""
    from pipelines.idfiles import read_many
    from pipelines.registry import open_registry

    home = invocation.locate().ensure()
    now = utcnow()
    batch, file_errors = read_many(list(files), anchor=now, stdin=sys.stdin.buffer)
    with open_registry(home) as registry:
        result = registry.add(batch.ids, source="cli:" + ",".join(files), now=now)
    for rejection in batch.rejections:
        errors.print(f"rejected {rejection}", markup=False, highlight=False)
    for error in file_errors:
        errors.print(f"error: {error}", markup=False, highlight=False)
    console.print(
        f"added {result.added}, already known {result.already_known + batch.duplicates_in_input}, "
        f"rejected {len(batch.rejections)}" + (f", unreadable files {len(file_errors)}" if file_errors else "")
    )
    return EXIT_FAILED if batch.rejections or file_errors else EXIT_OK


@mureka_etl.command("ingest", short_help="load saved job records: registry, lake, warehouse", epilog=epilog(ENV_HOME))
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=INGEST_BATCH_RECORDS, help="records per batch (bounds memory)"
)
@click.option("--quiet", is_flag=True, help="no progress display")
@shared_options()
@pass_invocation
def ingest_command(invocation: Invocation, files: tuple[str, ...], batch_size: int, quiet: bool) -> int:
    """Load saved job records (JSON lines of GET /jobs/{jobid} answers, gzip ok; - reads stdin) into the
    registry, the lake and the warehouse. Bad lines are skipped and named with file and line (exit 1)."""
    from pipelines.ingest import BAR_STAGES, ingest
    from pipelines.progress import BarProgress

    home = invocation.locate()
    if quiet:
        report = ingest(home, list(files), stdin=sys.stdin.buffer, batch_records=batch_size)
    else:
        with BarProgress(stages=BAR_STAGES) as bar:
            report = ingest(home, list(files), stdin=sys.stdin.buffer, batch_records=batch_size, progress=bar.stage)
    if invocation.settings.dagster_home:  # the UI's instance: the ingested days show as materialized partitions
        from assets.ingest_events import record_ingest

        recorded = record_ingest(home, report, invocation.settings)
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


@mureka_etl.command("status", short_help="ids by state, due now, at risk of expiry, lost", epilog=epilog(ENV_HOME))
@shared_options()
@pass_invocation
def status_command(invocation: Invocation) -> int:
    """Show the registry: ids by state, due now, at risk of expiry (< 24 h left, not final), lost. The home
    must exist (exit 2 otherwise); nothing is created."""
    from pipelines import summary

    summary.print_registry_status(console, existing_home(invocation), utcnow())
    return EXIT_OK


def api_resource(settings: Settings, concurrency: int | None = None) -> "MurekaApiResource":
    """The API resource of `sync` and `audit`: the settings' base URL, and the token through `dg.EnvVar` so that
    it never becomes part of a run's config. Exit 2 when no token is set."""
    import dagster as dg

    from assets.resources import MurekaApiResource

    if not settings.has_token:
        raise CliError(f"{TOKEN} is not set. Export your useapi.net API token (user:<digits>-...) first.", EXIT_USAGE)
    extra = {} if concurrency is None else {"concurrency": concurrency}
    return MurekaApiResource(base_url=settings.base_url, token=dg.EnvVar(TOKEN), **extra)


@mureka_etl.command(
    "sync",
    short_help="fetch every due job from the API, then load the warehouse",
    epilog=epilog(ENV_HOME, ENV_API),
)
@click.option("--concurrency", type=click.IntRange(min=1), default=16, help="parallel requests")
@click.option("--quiet", is_flag=True, help="no progress bar")
@shared_options()
@pass_invocation
def sync_command(invocation: Invocation, concurrency: int, quiet: bool) -> int:
    """Fetch every due job id (nearest deadline first) from USEAPI_BASE_URL with USEAPI_TOKEN, archive the
    answers, flatten them into the lake and load the warehouse: one in-process Dagster run. With DAGSTER_HOME set
    the run joins that instance's history."""
    from assets.runner import run_capture
    from pipelines import summary

    api = api_resource(invocation.settings, concurrency)
    home = invocation.locate()
    run = run_capture(home, api, settings=invocation.settings, bar=not quiet)
    summary.print_run(console, home, run)
    return EXIT_OK


@mureka_etl.command(
    "audit",
    short_help="scan every account's song and speech feed and audit the captured jobs against it",
    epilog=epilog(ENV_HOME, ENV_API),
)
@click.option("--full", is_flag=True, help="page every feed to its end (default: only what is new)")
@click.option("--max-pages", type=click.IntRange(min=1), help="requests per account and feed in this run (default 50)")
@shared_options()
@pass_invocation
def audit_command(invocation: Invocation, full: bool, max_pages: int | None) -> int:
    """Scan what is new in every account's music and speech feeds (GET /music, GET /speech), archive and load
    it, and print the audit: feed items matched by a captured job, lost, or with no known job. Runs the Dagster
    job feeds_job in-process. Exits 1 when a check fails, an account answers 596 or a feed kept failing."""
    from assets.runner import run_feeds
    from pipelines.feeds import audit_table
    from pipelines.query import QueryResult, render

    api = api_resource(invocation.settings)
    home = invocation.locate()
    run = run_feeds(home, api, full=full, max_pages=max_pages, settings=invocation.settings)
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


@mureka_etl.command(
    "demo", short_help="the whole pipeline on the embedded simulator, in a home of its own", epilog=epilog()
)
@click.option("--jobs", type=click.IntRange(min=1), default=3000, help="simulated jobs over 10 days")
@click.option("--seed", type=int, default=7, help="seed of the simulated jobs")
@shared_options(home_default=f"./{DEMO_HOME}")
@pass_invocation
def demo_command(invocation: Invocation, jobs: int, seed: int) -> int:
    """Run the whole pipeline against the embedded simulator in a home of its own (--home, default ./demo),
    wiped first if a previous demo made it; a folder the demo did not make is refused. Reads no environment
    variable: the demo serves its own API."""
    from cli.demo import run_demo

    return run_demo(console, invocation.locate(default=DEMO_HOME).root, invocation.settings, jobs=jobs, seed=seed)


@mureka_etl.command("query", short_help="run read-only SQL over the tables and views", epilog=epilog(ENV_HOME))
@click.argument("sql", required=False)
@click.option("-f", "--file", "sql_file", metavar="FILE", help="read SQL from a file")
@click.option(
    "--format", "output_format", type=click.Choice(["table", "csv", "json"]), default="table", help="output format"
)
@click.option("--list", "list_relations_only", is_flag=True, help="list tables and views with their columns")
@shared_options()
@pass_invocation
def query_command(
    invocation: Invocation, sql: str | None, sql_file: str | None, output_format: "Format", list_relations_only: bool
) -> int:
    """Run read-only SQL (the argument, - or nothing for stdin, or -f FILE) over the tables and views, read from
    the lake: it never waits on a running sync. The home must exist (exit 2 otherwise); nothing is created."""
    from rich.markup import escape

    from pipelines.query import connect_readonly, list_relations, render, run_query

    home = existing_home(invocation)
    try:
        text = None if list_relations_only else _read_sql(sql, sql_file)
    except OSError as error:
        raise CliError(f"cannot read the SQL file: {error}", EXIT_USAGE) from error
    if text is not None and not text.strip():
        raise CliError("no SQL given (an argument, -f FILE, or stdin)", EXIT_USAGE)
    con = connect_readonly(home)
    try:
        if text is None:
            for name, kind, columns in list_relations(con):
                described = ", ".join(f"{column} {data_type}" for column, data_type in columns)
                console.print(f"[bold]{escape(name)}[/bold] ({kind}): {escape(described)}", highlight=False)
            return EXIT_OK
        sys.stdout.write(render(run_query(con, text), output_format))
        return EXIT_OK
    finally:
        con.close()


@mureka_etl.command("report", short_help="write the HTML report", epilog=epilog(ENV_HOME))
@click.option("--out", metavar="FILE", help="where to write it, in a folder that exists (default <home>/report.html)")
@shared_options()
@pass_invocation
def report_command(invocation: Invocation, out: str | None) -> int:
    """Write the HTML report: daily volume, failure rates, song durations, latency, capture health. The home must
    exist (exit 2 otherwise)."""
    from pipelines.report import write_home_report

    home = existing_home(invocation)
    target = Path(out).resolve() if out else None
    if target is not None and target.is_dir():
        raise CliError(f"--out {target} is a folder: give a file name, e.g. {target / 'report.html'}", EXIT_USAGE)
    if target is not None and not target.parent.is_dir():
        raise CliError(f"--out: the folder {target.parent} does not exist (create it first)", EXIT_USAGE)
    summary = write_home_report(home, utcnow(), target)
    console.print(f"Report: {summary.path}", highlight=False)
    return EXIT_OK


@mureka_etl.group(
    "webhook",
    short_help="receive useapi.net webhook deliveries (replyUrl) into the spool",
    epilog=epilog(ENV_HOME, ENV_SECRET),
)
@shared_options()
def webhook_group() -> None:
    """Receive the deliveries useapi.net POSTs to a job's replyUrl: `webhook serve` runs the receiver, `webhook
    url` prints the replyUrl to give the create endpoints."""


@webhook_group.command(
    "serve",
    short_help="serve POST /hooks/mureka/$MUREKA_WEBHOOK_SECRET until Ctrl-C",
    epilog=epilog(ENV_HOME, ENV_SECRET),
)
@click.option("--host", default="127.0.0.1", help="address to bind (put a TLS proxy in front)")
@click.option("--port", type=click.IntRange(1, 65535), default=8787, help="port")
@shared_options()
@pass_invocation
def webhook_serve_command(invocation: Invocation, host: str, port: int) -> int:
    """Serve POST /hooks/mureka/$MUREKA_WEBHOOK_SECRET (ASGI on uvicorn): each delivery is written and fsynced to
    <home>/webhook/spool before it is answered 200; the capture run confirms it with one GET."""
    from pipelines.webhook.receiver import WebhookConfigError, serve, webhook_secret

    try:
        secret = webhook_secret()
    except WebhookConfigError as error:
        raise CliError(str(error), EXIT_USAGE) from error
    try:
        serve(invocation.locate().ensure(), secret, host=host, port=port)
    except WebhookConfigError as error:
        raise CliError(str(error)) from error
    return EXIT_OK


@webhook_group.command("url", short_help="print the replyUrl to give the create endpoints", epilog=epilog(ENV_SECRET))
@click.option("--base", required=True, help="the public base URL of your proxy, e.g. https://example.org")
@shared_options()
def webhook_url_command(base: str) -> int:
    """Print the replyUrl (base URL + /hooks/mureka/<secret>) to pass to the create endpoints."""
    from pipelines.webhook.receiver import WebhookConfigError, reply_url, webhook_secret

    try:
        print(reply_url(base, webhook_secret()))
    except WebhookConfigError as error:
        raise CliError(str(error), EXIT_USAGE) from error
    return EXIT_OK


def existing_home(invocation: Invocation) -> Home:
    """The home of a reading command: it must exist (nothing is created); a warning when it holds no job."""
    home = invocation.locate()
    if not home.root.is_dir():
        raise CliError(
            f"home {home.root} does not exist: give --home or {HOME} (to start one: `mureka-etl ids add`,"
            f" `sync` or `ingest`; {_where_the_demo_is()})",
            EXIT_USAGE,
        )
    from pipelines import lake

    if not lake.holds_captured_jobs(home):
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


def _read_sql(sql: str | None, sql_file: str | None) -> str:
    if sql_file:
        return Path(sql_file).read_text(encoding="utf-8")
    if sql and sql != "-":
        return sql
    return sys.stdin.read()


def main(argv: list[str] | None = None) -> int:
    """Run one `mureka-etl` command line; every way it can end becomes an exit code."""
    invocation = Invocation()
    with StopSignals() as stop:
        try:
            code = mureka_etl.main(argv, prog_name=PROG, standalone_mode=False, obj=invocation)
        except click.ClickException as error:  # wrong usage: click's usage line, a hint and `Error: ...`
            error.show()
            code = error.exit_code
        except (KeyboardInterrupt, click.Abort):
            code = exit_code(stop.received() or signal.SIGINT)
        except Exception as error:  # noqa: BLE001 - every failure ends here, in one line
            code = None if stop.received() else _report_failure(error, invocation.verbose, invocation.located)
        signum = stop.received()
    if signum is not None:
        # Whatever the stop left behind (a failed run, an interrupted write) is a consequence, not the cause.
        errors.print(f"stopped by {signal.Signals(signum).name}", highlight=False)
        return exit_code(signum)
    return code


def _report_failure(error: Exception, verbose: bool, home: Home | None) -> int:
    """Print `error: <why>` (and with --verbose the traceback first); return the exit code. `home` is the one the
    command works in, None when the failure came before it was known."""
    if verbose:
        detail = getattr(error, "detail", "")
        errors.print(detail or "".join(traceback.format_exception(error)), markup=False, highlight=False)
    message, code = _known(error, home) or (
        f"{type(error).__name__}: {_one_line(str(error))} (rerun with --verbose for the traceback)",
        EXIT_FAILED,
    )
    errors.print(f"error: {message}", markup=False, highlight=False)
    return code


def _known(error: Exception, home: Home | None) -> tuple[str, int] | None:
    """(message, exit code) of a failure whose cause is known; None for anything else. `home` names where a
    failure that carries no path of its own happened (a full disk, a busy registry)."""
    where_home = str(home.root) if home else "the home"
    if isinstance(error, CliError):
        return _one_line(str(error)), error.code
    if isinstance(error, SettingsError):
        return _one_line(str(error)), EXIT_USAGE
    if isinstance(error, _loaded(("cli.demo", "DemoHomeError"))):
        return _one_line(str(error)), EXIT_USAGE
    if isinstance(error, _loaded(*FAILURES)):
        return _one_line(str(error)), EXIT_FAILED
    if isinstance(error, OSError) and error.strerror:
        where = " -> ".join(str(name) for name in (error.filename, error.filename2) if name is not None)
        return f"{error.strerror}: {where or where_home}", EXIT_FAILED
    if isinstance(error, _loaded(("sqlite3", "OperationalError"))) and "locked" in str(error):
        registry = home.registry_path if home else "registry"
        return (
            f"the registry {registry} is busy (database is locked): another process holds its write lock; try"
            " again when it is done",
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
    ("pipelines.storage", "LakeStorageError"),
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
