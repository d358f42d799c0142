"""The read-only pages as a Starlette application over an ``App``.

Routes (stable: the browser tests use them): ``/`` the overview,
``/statistik`` (``?period=2027-Q1&series=<id>``) and ``/statistik.csv``,
``/healthz``, ``/metrics``, and the stylesheet under ``/static/``. Danish by
default, English with ``?lang=en`` or the browser's Accept-Language. Pages
are rendered on the server: no JavaScript, nothing from the internet.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlencode

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from scheduler.faults import describe
from scheduler.render import clock, long_date, templates_dir
from scheduler.web import i18n
from scheduler.web.auth import Access, load_users

STATIC = Path(__file__).parent / "static"
_AT = {"da": "kl.", "en": "at"}
log = logging.getLogger("sparring.web")


def make_web_app(app, *, live=None) -> Starlette:
    """The pages over ``app``'s database; ``live`` is the daemon when it runs in this process."""
    web = app.config.web
    source = app.config.source
    users = load_users(web, source.parent if source else Path.cwd()) if web.auth == "basic" else {}
    pages = Pages(app, live)
    routes = [
        Route("/", pages.overview, name="overview"),
        Route("/statistik", pages.statistics, name="statistics"),
        Route("/statistik.csv", pages.statistics_csv, name="statistics_csv"),
        Route("/healthz", pages.healthz),
        Route("/metrics", pages.metrics),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [Middleware(Guard), Middleware(Access, web=web, users=users)]
    return Starlette(routes=routes, middleware=middleware)


class Guard(BaseHTTPMiddleware):
    """A bug answers 500 and is logged by its class and place, never its text or traceback."""

    async def dispatch(self, request, call_next):
        try:
            return await call_next(request)
        except Exception as exc:  # noqa: BLE001 - the one place a page's failure is caught
            log.error("page failed path=%s error=%s", request.url.path, describe(exc))
            return PlainTextResponse("Internal error; the service's log names its place.\n", 500)


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir() / "web")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )


class Pages:
    """The routes' handlers: plain functions, so Starlette runs them on its thread pool
    (each reads the database) and the event loop stays free for other requests."""

    def __init__(self, app, live) -> None:
        self.app = app
        self.live = live
        self.default_language = app.config.web.language or app.language

    def language(self, request) -> str:
        return i18n.choose(request.query_params.get("lang"), request.headers.get("accept-language"),
                           self.default_language)

    def page(self, request, template: str, status: int = 200, shown: dict[str, str] | None = None,
             **context) -> HTMLResponse:
        """``shown``: the query the page read and checked; the language switch keeps it, and
        nothing else a visitor typed (it could be anything, a CPR number too)."""
        language = self.language(request)
        tz = self.app.tz
        other = "en" if language == "da" else "da"
        query = shown or {}
        html = environment().get_template(template).render(
            lang=language, t=i18n.words(language), path=request.url.path,
            other=other, other_href=f"{request.url.path}?{urlencode({**query, 'lang': other})}",
            lang_query=f"lang={language}" if "lang" in request.query_params else "",
            zone=self.app.config.service.timezone,
            when=lambda moment: f"{long_date(moment, language, tz)} {_AT[language]} {clock(moment, language, tz)}",
            day=lambda moment: long_date(moment, language, tz),
            hour=lambda moment: clock(moment, language, tz),
            **context)
        return HTMLResponse(html, status, headers={"Content-Language": language})

    def overview(self, request):
        from scheduler.services.overview import overview

        view = overview(self.app)
        return self.page(request, "overview.html.j2", view=view, left=_left, live=self.live)

    def statistics(self, request):
        from scheduler.web.statistics import statistics_page

        return statistics_page(self, request)

    def statistics_csv(self, request):
        from scheduler.web.statistics import statistics_csv

        return statistics_csv(self, request)

    def healthz(self, request):
        from scheduler.services.metrics import health

        state = health(self.app)
        if state.ok:
            return PlainTextResponse("ok\n")
        failing = "".join(f"{name}: {sentence}\n" for name, ok, sentence in state.checks if not ok)
        return PlainTextResponse(failing, 503)

    def metrics(self, request):
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        from scheduler.services.metrics import registry

        return Response(generate_latest(registry(self.app)), media_type=CONTENT_TYPE_LATEST)


def _left(deadline: datetime, now: datetime) -> tuple[int, int, int]:
    """Whole days, hours and minutes from ``now`` to ``deadline``: real time, in UTC (two
    datetimes of one zone subtract as wall times, an hour off across a summer time switch)."""
    span = max(deadline.astimezone(timezone.utc) - now.astimezone(timezone.utc), timedelta(0))
    return span.days, span.seconds // 3600, span.seconds % 3600 // 60
