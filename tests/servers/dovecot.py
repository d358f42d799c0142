"""Fixture module for dovecot (filled in by its adapter's work)."""
