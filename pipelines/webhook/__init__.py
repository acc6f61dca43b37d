"""Webhook intake: the receiver that spools useapi.net deliveries durably, and the intake that confirms them.

Plain library code (no Dagster): `spool` (append-only segments under the home), `receiver` (the ASGI app and
its uvicorn server), `intake` (confirm each delivered job by one GET, archive the answer, register the id).
"""
