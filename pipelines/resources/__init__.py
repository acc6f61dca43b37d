"""Dagster resources: one class per module."""

from pipelines.resources.home import HomeResource
from pipelines.resources.mureka_api import MurekaApiResource
from pipelines.resources.progress import ProgressResource

__all__ = ["HomeResource", "MurekaApiResource", "ProgressResource"]
