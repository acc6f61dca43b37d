"""`webhook_sensor`: turns new webhook spool segments into capture runs of the days they belong to.

The sensor only stats the spool (no API call, no registry write): each creation day holding unread deliveries
gets one run, keyed by the day and the names and sizes of its unread segments, so a day is run again only when
new deliveries arrive. The run's `raw` asset confirms and archives them (`pipelines.webhook.intake`), then
flattens and loads as any capture run does.
"""

import dagster as dg

from assets.partitions import partitions_for
from assets.resources import HomeResource
from assets.schedules import digest, run_requests, waiting_days
from pipelines.config import utcnow
from pipelines.webhook import spool


def build_webhook_sensor(job_name: str, partitions: dg.PartitionsDefinition | None = None) -> dg.SensorDefinition:
    """The webhook spool sensor, requesting runs of job `job_name` for days that are `partitions` (default: the
    home's as they are at each tick)."""

    @dg.sensor(
        name="webhook_sensor",
        job_name=job_name,
        minimum_interval_seconds=15,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Requests a capture run for each creation day with new webhook deliveries in"
        " $MUREKA_ETL_HOME/webhook/spool (written by `mureka-etl webhook serve`).",
    )
    def webhook_sensor(context: dg.SensorEvaluationContext, home: HomeResource) -> dg.SensorResult | dg.SkipReason:
        found = spool.pending(home.home)
        if not found:
            return dg.SkipReason("no new webhook delivery in the spool")
        now = utcnow()
        keys = set((partitions or partitions_for(home.home, now)).get_partition_keys(current_time=now))
        waiting = waiting_days(context.instance)
        requests = []
        for day, segments in sorted(found.items()):
            if day.isoformat() not in keys:
                context.log.warning(f"webhook deliveries for {day}, which is not a partition: left in the spool")
                continue
            key = "webhook-" + digest(f"{name}:{size}" for name, size in segments)
            requests += run_requests([day], key, waiting, "webhook_sensor")
        if not requests:
            return dg.SkipReason("every day with new deliveries already has a queued run")
        return dg.SensorResult(run_requests=requests)

    return webhook_sensor
