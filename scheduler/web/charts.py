"""Charts of the statistics as inline SVG (pygal), drawn on the server.

Drawn from the table's shown cells: a count shown as "<5" is not drawn at
all, so a chart never reveals what the table hides. No JavaScript: pygal's
script references (``js``) are off and its inline config script is removed;
the SVG is named (``role="img"``, ``aria-label``), and the table is its data.
"""

from __future__ import annotations

import re

import pygal
from pygal.style import Style

STYLE = Style(background="#ffffff", plot_background="#ffffff", foreground="#1a1a1a",
              foreground_strong="#1a1a1a", foreground_subtle="#6b6b6b", colors=("#0b4f9c",),
              font_family="system-ui, sans-serif", label_font_size=14, major_label_font_size=14,
              value_font_size=14, title_font_size=16, value_colors=("#1a1a1a",), opacity=1, opacity_hover=1)
_SCRIPT = re.compile(r"<script\b.*?</script>|<!--.*?-->", re.S)
# pygal writes coordinates like 96.56410256410257: a run of digits a CPR detector rightly flags.
_LONG_DECIMAL = re.compile(r"(\d+\.\d\d)\d+")


def _number(cell: str) -> int | None:
    return int(cell) if cell.isdigit() else None


def bar(ident: str, title: str, labels: list[str], values: list[int | None], alt: str) -> str:
    """One bar per label; None (a suppressed count) draws no bar. The figure's caption is the title.
    ``ident`` names the chart's element id (``chart-<ident>``) instead of pygal's random UUID, whose
    digits can form a run a CPR detector rightly flags."""
    chart = pygal.Bar(js=[], disable_xml_declaration=True, style=STYLE, show_legend=False, print_values=True,
                      print_values_position="top", print_zeroes=True, width=640, height=300,
                      x_labels=labels, truncate_label=-1, y_labels=_ticks(values))
    chart.uuid = ident
    chart.add(title, values)
    svg = _LONG_DECIMAL.sub(r"\1", _SCRIPT.sub("", chart.render(is_unicode=True)))
    return svg.replace("<svg ", f'<svg role="img" aria-label="{_attr(alt)}" focusable="false" ', 1)


def _ticks(values: list[int | None]) -> list[int]:
    """Whole numbers from 0, about five steps: a count has no 0.2."""
    top = max([5, *(v for v in values if v is not None)])
    step = -(-top // 5)
    return list(range(0, top + step, step))


def _attr(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


def figures(table, cells: list[list[str]], words: dict[str, str]) -> list[tuple[str, str]]:
    """(caption, svg): items brought per age group; decisions by kind."""
    shown = {row.measure: cells[i + 1] for i, row in enumerate(table.rows)}
    result = []
    if "brought" in shown:
        title = words["chart_brought"]
        groups = cells[0][1:-1]  # the header's group columns, between the label and the total
        result.append((title, bar("brought", title, groups, [_number(c) for c in shown["brought"][1:-1]],
                                  words["chart_alt"].format(title=title))))
    decisions = [(cells[i + 1][0], cells[i + 1][-1]) for i, row in enumerate(table.rows)
                 if row.measure.startswith("decision:")]
    if decisions:
        title = words["chart_decisions"]
        # "Afgørelse: opstart" -> "opstart": the caption says they are decisions.
        result.append((title, bar("decisions", title, [label.partition(": ")[2] or label for label, _ in decisions],
                                  [_number(total) for _, total in decisions],
                                  words["chart_alt"].format(title=title))))
    return result
