"""Alembic migrations of the sparring schema (a package so wheels include it)."""
