"""Alembic migrations of the catalog (a package so they ship inside the wheel)."""
