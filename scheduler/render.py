"""The Jinja2 environment over ``templates/<language>/``.

Templates are looked up in the requested language first, then in Danish.
HTML templates (``*.html.j2``) are autoescaped; text templates are not.
Set ``SPARRING_TEMPLATES`` to use a municipality's own copies.

Every time a person reads is shown in the service's zone (``tz``,
``service.timezone``): the ``clock`` and ``long_date`` filters convert
first, so a mail that arrived at 11:30 UTC in winter reads "kl. 12.30".
``localtime.people_time`` is the same rule for Python code (``status``, the CLI).
"""

from __future__ import annotations

import os
from datetime import date, datetime, tzinfo
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2

from scheduler.localtime import local

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "templates"
DEFAULT_ZONE = ZoneInfo("Europe/Copenhagen")  # service.timezone's default

_WEEKDAYS = {
    "da": ("mandag", "tirsdag", "onsdag", "torsdag", "fredag", "lørdag", "søndag"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}
_MONTHS = {
    "da": ("januar", "februar", "marts", "april", "maj", "juni", "juli",
           "august", "september", "oktober", "november", "december"),
    "en": ("January", "February", "March", "April", "May", "June", "July",
           "August", "September", "October", "November", "December"),
}


def templates_dir() -> Path:
    return Path(os.environ.get("SPARRING_TEMPLATES") or DEFAULT_DIR)


def long_date(day: date | datetime, language: str = "da", tz: tzinfo | None = None) -> str:
    """'onsdag den 13. januar 2027' / 'Wednesday 13 January 2027'."""
    if isinstance(day, datetime):
        day = local(day, tz or DEFAULT_ZONE)
    weekday = _WEEKDAYS[language][day.weekday()]
    month = _MONTHS[language][day.month - 1]
    if language == "da":
        return f"{weekday} den {day.day}. {month} {day.year}"
    return f"{weekday} {day.day} {month} {day.year}"


def clock(moment: datetime, language: str = "da", tz: tzinfo | None = None) -> str:
    """'14.00' in Danish usage, '14:00' in English, in the service's zone."""
    moment = local(moment, tz or DEFAULT_ZONE)
    return f"{moment:%H.%M}" if language == "da" else f"{moment:%H:%M}"


@lru_cache(maxsize=8)
def environment(language: str = "da", tz: tzinfo = DEFAULT_ZONE) -> jinja2.Environment:
    base = templates_dir()
    search = [str(base / language)] + ([str(base / "da")] if language != "da" else [])
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(search),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2")),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,  # read once: no stat() per mail; a restart picks up edits
    )
    env.filters["long_date"] = lambda d: long_date(d, language, tz)
    env.filters["clock"] = lambda m: clock(m, language, tz)
    return env


def render(template: str, language: str = "da", *, tz: tzinfo = DEFAULT_ZONE, **context: object) -> str:
    return environment(language, tz).get_template(template).render(**context)


def render_mail(template: str, language: str = "da", *, tz: tzinfo = DEFAULT_ZONE,
                **context: object) -> tuple[str, str]:
    """Subject and body of a mail template; the subject is the template's
    top-level ``{% set subject = ... %}`` so that it is translated with it."""
    module = environment(language, tz).get_template(template).make_module(context)
    body = str(module).lstrip("\n")
    return str(module.subject).strip(), body
