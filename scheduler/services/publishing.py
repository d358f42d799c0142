"""Publishing sessions over the rolling horizon (``calendar.horizon_months``)."""

from __future__ import annotations

from datetime import timedelta


def horizon_end(app):
    return app.now().date() + timedelta(days=31 * app.config.calendar.horizon_months)


def publish_horizon(app) -> None:
    with app.transaction() as repo:
        app.calendar_sync.publish(repo, app.now().date(), horizon_end(app))
