"""The statistics page and its CSV: one table (``statistics.table``), shown three ways.

The page's table, the charts and the CSV are all made from
``table.cells(language)``: the suppressed strings ("<5", a median left out),
so no view shows more than the table does, and the CSV equals the table.
"""

from __future__ import annotations

from starlette.responses import Response

from scheduler.planning.statistics import Period
from scheduler.services import statistics
from scheduler.web import charts, i18n


class BadRequest(ValueError):
    """A period or series the page cannot show; the message key names which."""


def _chosen(pages, request) -> tuple[Period, str | None]:
    text = request.query_params.get("period", "").strip()
    try:
        period = Period.parse(text) if text else Period.containing(pages.app.now().date())
    except ValueError:
        raise BadRequest("bad_period") from None
    series = request.query_params.get("series", "").strip() or None
    if series is not None and series not in pages.app.series:
        raise BadRequest("bad_series")
    return period, series


def statistics_page(pages, request):
    language = pages.language(request)
    words = i18n.words(language)
    try:
        period, series = _chosen(pages, request)
    except BadRequest as problem:
        # One sentence; the input is not echoed (it could be anything, a CPR number too).
        return pages.page(request, "statistics.html.j2", 400, error=words[str(problem)], period_text="",
                          series_id=None, all_series=list(pages.app.series.values()), table=None)
    table = statistics.table(pages.app, period, series_id=series)
    cells = table.cells(language)
    groups = [*table.groups, "total"]  # the columns of cells(), after the label
    shown = {"period": period.label, **({"series": series} if series else {})}
    return pages.page(
        request, "statistics.html.j2", shown=shown, error=None, period_text=period.label, series_id=series,
        all_series=list(pages.app.series.values()), table=table, header=cells[0],
        rows=[(row.measure, cells[i + 1]) for i, row in enumerate(table.rows)], groups=groups,
        csv_href=f"/statistik.csv?period={period.label}" + (f"&series={series}" if series else "")
                 + f"&lang={language}",
        figures=charts.figures(table, cells, words))


def statistics_csv(pages, request):
    language = pages.language(request)
    try:
        period, series = _chosen(pages, request)
    except BadRequest as problem:
        return Response(i18n.words(language)[str(problem)] + "\n", 400, media_type="text/plain; charset=utf-8")
    table = statistics.table(pages.app, period, series_id=series)
    name = f"sparring-statistik-{period.label}{'-' + series if series else ''}.csv"
    # A byte order mark: Excel then reads the file as UTF-8 ("æøå").
    return Response(("\ufeff" + table.csv(language)).encode("utf-8"), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
