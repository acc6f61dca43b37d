"""Dagster resources: one class per module."""

from assets.resources.home import HomeResource
from assets.resources.mureka_api import MurekaApiResource
from assets.resources.progress import ProgressResource

__all__ = ["HomeResource", "MurekaApiResource", "ProgressResource"]
