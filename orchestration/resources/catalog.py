"""Catalog database resource (SQLAlchemy; SQLite locally, PostgreSQL in production)."""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import PrivateAttr


class CatalogResource(dg.ConfigurableResource):
    """The platform catalog: source videos, rejections, clips, datasets, models, deployments."""

    url: str
    migrate_on_start: bool = True

    _catalog: Any = PrivateAttr(default=None)

    def catalog(self) -> Any:
        """The migrated :class:`infra.catalog.Catalog` for this URL (created once per resource)."""
        if self._catalog is None:
            from infra.catalog import Catalog, migrate

            if self.migrate_on_start:
                migrate(self.url)
            self._catalog = Catalog(self.url)
        return self._catalog
