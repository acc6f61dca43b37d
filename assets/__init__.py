"""Dagster assets and checks: thin wrappers over `pipelines/`."""

import warnings

import dagster as dg

# BackfillPolicy is beta in Dagster 1.13; we depend on it on purpose (bounded backfill runs).
warnings.filterwarnings("ignore", category=dg.BetaWarning)
