"""Alembic revision scripts of the catalog, oldest first by ``down_revision`` chain."""
