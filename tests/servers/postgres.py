"""Fixture module for postgres (filled in by its adapter's work)."""
