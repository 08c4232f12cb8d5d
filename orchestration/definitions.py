"""Dagster entry point: `dagster dev -m orchestration.definitions`."""

from __future__ import annotations

import dagster as dg

defs = dg.Definitions(assets=[])
