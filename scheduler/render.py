"""The Jinja2 environment over ``templates/<language>/``.

Templates are looked up in the requested language first, then in Danish.
HTML templates (``*.html.j2``) are autoescaped; text templates are not.
Set ``SPARRING_TEMPLATES`` to use a municipality's own copies.
"""

from __future__ import annotations

import os
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path

import jinja2

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "templates"

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


def long_date(day: date | datetime, language: str = "da") -> str:
    """'onsdag den 13. januar 2027' / 'Wednesday 13 January 2027'."""
    weekday = _WEEKDAYS[language][day.weekday()]
    month = _MONTHS[language][day.month - 1]
    if language == "da":
        return f"{weekday} den {day.day}. {month} {day.year}"
    return f"{weekday} {day.day} {month} {day.year}"


def clock(moment: datetime) -> str:
    """'14.00' in Danish usage, '14:00' in English; the filter is per language."""
    return f"{moment:%H.%M}"


@lru_cache(maxsize=4)
def environment(language: str = "da") -> jinja2.Environment:
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
    env.filters["long_date"] = lambda d: long_date(d, language)
    env.filters["clock"] = clock if language == "da" else (lambda m: f"{m:%H:%M}")
    return env


def render(template: str, language: str = "da", **context: object) -> str:
    return environment(language).get_template(template).render(**context)


def render_mail(template: str, language: str = "da", **context: object) -> tuple[str, str]:
    """Subject and body of a mail template; the subject is the template's
    top-level ``{% set subject = ... %}`` so that it is translated with it."""
    module = environment(language).get_template(template).make_module(context)
    body = str(module).lstrip("\n")
    return str(module.subject).strip(), body
