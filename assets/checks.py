"""Asset checks: keys, durations, songs and speech of completed jobs, expiry risk, lost ids, API drift, and the
lake against the raw archive.

Table checks read the lake through an in-memory DuckDB (pipelines/checks.py), never the warehouse file;
registry checks read the registry. In a run they check the run's partitions (creation days) only, so a
capture run costs what its days hold, not the whole history; run on their own (no partition), they check
every day. Expiry risk always looks at every id: it is about the deadlines ahead, and read by index.
"""

from collections.abc import Iterator
from datetime import date

import dagster as dg

from assets.partitions import tagged_days
from assets.resources import HomeResource
from pipelines import checks
from pipelines.config import Home, utcnow
from pipelines.registry import AT_RISK_WINDOW

ERROR = dg.AssetCheckSeverity.ERROR
WARN = dg.AssetCheckSeverity.WARN


TABLE_CHECKS = [
    # (check name, asset, sql/checks query, description)
    ("jobs_key_unique", "jobs", "jobs_duplicate_keys", "Every jobid appears once in jobs."),
    ("songs_key_unique", "songs", "songs_duplicate_keys", "Every (jobid, song_id, version) appears once in songs."),
    ("song_durations_non_negative", "songs", "songs_negative_durations", "No song has a negative duration."),
    ("speech_durations_non_negative", "speech", "speech_negative_durations", "No speech has a negative duration."),
    (
        "completed_music_has_songs",
        "jobs",
        "music_without_songs",
        "Every completed music job has at least one row in songs, unless its response lists no songs.",
    ),
    ("completed_tts_has_speech", "jobs", "tts_without_speech", "Every completed TTS job has a row in speech."),
]
DRIFT = (
    "api_drift",
    "jobs",
    "Counts undocumented fields (jobs.extra_fields) and statuses other than created/completed/failed;"
    " warns when the API sends anything the pipeline does not know.",
)
EXPIRY_RISK = (
    "expiry_risk",
    "job_ids",
    f"Fails when ids that are not final yet expire within {AT_RISK_WINDOW.total_seconds() / 3600:g} h"
    " (or are past their deadline unfetched); lists them, nearest deadline first.",
)
LOST_JOBS = ("lost_jobs", "job_ids", "Warns about ids that expired (404 past deadline) before any capture.")
QUARANTINED = (
    "quarantined_answers",
    "raw",
    "Warns about ids whose last answer cannot be stored as a record (not a JSON object of that job, an undocumented"
    " 2xx, a body the flattener cannot read): kept in lake/raw with the reason, the id still due; lists ids and"
    " reasons.",
)


def run_days(context: dg.AssetCheckExecutionContext) -> list[date] | None:
    """The creation days of the check's run, from its partition tags; None for a run without partitions (or
    a direct call)."""
    return tagged_days(context.op_execution_context.run_tags)


def _scope(days: list[date] | None) -> str:
    return "every day" if days is None else f"{days[0]}..{days[-1]}"


def _specs(*checks_: tuple[str, str, str]) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(name, asset=asset, description=text) for name, asset, text in checks_]


# One step per group: the lake is opened once for every table check, the registry read once.
@dg.multi_asset_check(
    name="lake_checks",
    specs=_specs(*[(name, asset, text) for name, asset, _, text in TABLE_CHECKS], DRIFT),
    description="Keys, durations, songs and speech of completed jobs, and API drift, over the run's days.",
)
def lake_checks(context: dg.AssetCheckExecutionContext, home: HomeResource) -> Iterator[dg.AssetCheckResult]:
    yield from lake_results(home.home, run_days(context))


def lake_results(home: Home, days: list[date] | None) -> list[dg.AssetCheckResult]:
    """The table checks and API drift over `days` (every day when None)."""
    queries = [query for _, _, query, _ in TABLE_CHECKS] + ["drift_fields", "drift_statuses"]
    found = checks.find(home, queries, days)
    results = [
        dg.AssetCheckResult(
            asset_key=asset,
            check_name=name,
            passed=found[query].count == 0,
            severity=ERROR,
            metadata={
                "days": _scope(days),
                "offending_rows": found[query].count,
                "jobids": dg.MetadataValue.json(found[query].first("jobid")),
                "preview": dg.MetadataValue.md(found[query].markdown()),
            },
        )
        for name, asset, query, _ in TABLE_CHECKS
    ]
    fields, statuses = found["drift_fields"], found["drift_statuses"]
    results.append(
        dg.AssetCheckResult(
            asset_key=DRIFT[1],
            check_name=DRIFT[0],
            passed=fields.count == 0 and statuses.count == 0,
            severity=WARN,
            metadata={
                "days": _scope(days),
                "unknown_fields": fields.count,
                "jobs_with_unknown_fields": fields.total("jobs"),
                "unknown_statuses": statuses.count,
                "jobs_with_unknown_status": statuses.total("jobs"),
                "fields": dg.MetadataValue.md(fields.markdown()),
                "statuses": dg.MetadataValue.md(statuses.markdown()),
            },
        )
    )
    return results


@dg.multi_asset_check(
    name="registry_checks",
    specs=_specs(EXPIRY_RISK, LOST_JOBS),
    description="Ids at risk of expiring before they are final (ERROR), and ids of the run's days already lost (WARN).",
)
def registry_checks(context: dg.AssetCheckExecutionContext, home: HomeResource) -> Iterator[dg.AssetCheckResult]:
    yield from registry_results(home.home, run_days(context))


def registry_results(home: Home, days: list[date] | None) -> list[dg.AssetCheckResult]:
    """Expiry risk (every id) and the ids of `days` already lost."""
    found = checks.registry_findings(home, utcnow(), days)
    risk = found.at_risk
    return [
        dg.AssetCheckResult(
            asset_key=EXPIRY_RISK[1],
            check_name=EXPIRY_RISK[0],
            passed=risk.count == 0,
            severity=ERROR,
            metadata={
                "at_risk": risk.count,
                "due_now": risk.due_now,
                "jobids": dg.MetadataValue.json(risk.jobids),
                "preview": dg.MetadataValue.md(checks.markdown_table(["jobid"], [(i,) for i in risk.jobids])),
            },
        ),
        dg.AssetCheckResult(
            asset_key=LOST_JOBS[1],
            check_name=LOST_JOBS[0],
            passed=found.lost == 0,
            severity=WARN,
            metadata={"days": _scope(days), "lost": found.lost, "known_ids": found.known},
        ),
    ]


LAKE_MATCHES_RAW = (
    "lake_matches_raw",
    "job_observations",
    "The lake tables agree with the raw archive they are built from: no damaged file (unreadable, missing, or of"
    " another row count than written), every raw batch flattened, one job_observations row per raw observation.",
)


@dg.asset_check(asset=LAKE_MATCHES_RAW[1], name=LAKE_MATCHES_RAW[0], description=LAKE_MATCHES_RAW[2])
def lake_matches_raw(context: dg.AssetCheckExecutionContext, home: HomeResource) -> dg.AssetCheckResult:
    return lake_matches_raw_result(home.home, run_days(context))


def lake_matches_raw_result(home: Home, days: list[date] | None) -> dg.AssetCheckResult:
    found = checks.lake_raw_findings(home, days)
    return dg.AssetCheckResult(
        asset_key=LAKE_MATCHES_RAW[1],
        check_name=LAKE_MATCHES_RAW[0],
        passed=found.count == 0,
        severity=ERROR,
        metadata={
            "days": _scope(days),
            "damaged_files": dg.MetadataValue.json([str(d.path) for d in found.damaged]),
            "days_not_flattened": len(found.pending),
            "days_mismatched": len(found.mismatched),
            "preview": dg.MetadataValue.md(found.markdown()),
        },
    )


@dg.asset_check(asset=QUARANTINED[1], name=QUARANTINED[0], description=QUARANTINED[2])
def quarantined_answers(context: dg.AssetCheckExecutionContext, home: HomeResource) -> dg.AssetCheckResult:
    return quarantined_result(home.home, run_days(context))


def quarantined_result(home: Home, days: list[date] | None) -> dg.AssetCheckResult:
    found = checks.quarantined(home, days)
    rows = [(jobid, state, problem) for jobid, state, problem, _ in found.latest]
    return dg.AssetCheckResult(
        asset_key=QUARANTINED[1],
        check_name=QUARANTINED[0],
        passed=found.count == 0,
        severity=WARN,
        metadata={
            "days": _scope(days),
            "quarantined": found.count,
            "jobids": dg.MetadataValue.json({jobid: problem for jobid, _, problem in rows}),
            "preview": dg.MetadataValue.md(
                checks.markdown_table(["jobid", "state", "reason"], rows, omitted=found.count - len(rows))
            ),
        },
    )


def every_result(home: Home, days: list[date] | None) -> list[dg.AssetCheckResult]:
    """What every check above finds over `days`: how a write outside a run (ingest) brings the checks up to date."""
    return [
        *lake_results(home, days),
        *registry_results(home, days),
        lake_matches_raw_result(home, days),
        quarantined_result(home, days),
    ]


CHECKS = [lake_checks, registry_checks, lake_matches_raw, quarantined_answers]
