"""How each registered id was discovered, from the registry's `source` column.

Intake paths write these sources: `cli:<files>` (`ids add`) and `demo` (an id file), `inbox:<file>` (the inbox
sensor), `sensor:running_jobs` (the GET /jobs poll), `webhook` (a confirmed delivery), `ingest:<files>` (saved
records). `sql/views/v_capture_health.sql` groups them the same way (a test holds the two equal).
"""

from pipelines.registry import JobRegistry

ROUTES = ("file", "inbox", "running_poll", "webhook", "ingest", "other")


def route_of(source: str) -> str:
    """The discovery route of one `source` value."""
    if source in ("cli", "demo") or source.startswith("cli:"):
        return "file"
    if source.startswith("inbox:"):
        return "inbox"
    if source == "sensor:running_jobs":
        return "running_poll"
    if source == "webhook":
        return "webhook"
    if source.startswith("ingest:"):
        return "ingest"
    return "other"


def count_by_route(registry: JobRegistry) -> dict[str, int]:
    """Ids per discovery route, every route listed."""
    counts = dict.fromkeys(ROUTES, 0)
    for source, count in registry.count_by_source().items():
        counts[route_of(source)] += count
    return counts
