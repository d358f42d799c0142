"""Fixture module for radicale (filled in by its adapter's work)."""
