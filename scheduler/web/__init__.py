"""The coordinators' read-only web pages (issue 16): overview, statistics, /metrics, /healthz."""

from scheduler.web.app import make_web_app

__all__ = ["make_web_app"]
