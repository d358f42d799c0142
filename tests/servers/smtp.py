"""Fixture module for smtp (filled in by its adapter's work)."""
