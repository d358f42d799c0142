"""Fixture module for ews (filled in by its adapter's work)."""
