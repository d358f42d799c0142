"""HTML mail bodies to plain lines, as a caseworker sees them in Outlook.

Outlook's Word HTML puts every line in its own ``<p class=MsoNormal>``,
pads empty lines with ``<o:p>&nbsp;</o:p>`` and uses tables for layout.
Block elements therefore end a line without adding blank lines (several
block boundaries in a row collapse into one), ``<br>`` always ends a line,
a paragraph holding only ``&nbsp;`` is a blank line, and each table row
becomes one line with its cells joined by a space. Quoted material
(``<blockquote>``) and Outlook's ``<hr>`` before a reply header become a
``>`` line, which the text rules treat as the start of a quote.
"""

from __future__ import annotations

import re

from lxml import etree
from lxml import html as lxml_html

# etree's parser, not lxml.html's: its per-element Python class lookup costs
# more than the whole walk, and only ``text_content`` (_STRING here) was used.
_PARSER = etree.HTMLParser(
    encoding="utf-8", remove_comments=True, remove_pis=True, huge_tree=True  # deep nesting keeps its text
)
_STRING = etree.XPath("string()", smart_strings=False)  # lxml.html's text_content()
_SKIP = frozenset({"head", "style", "script", "title", "meta", "link", "xml", "template", "object"})
_BLOCK = frozenset({
    "p", "div", "table", "tbody", "thead", "tfoot", "ul", "ol", "li", "dl", "dt", "dd",
    "h1", "h2", "h3", "h4", "h5", "h6", "pre", "address", "section", "article", "header",
    "footer", "center", "form", "fieldset", "body", "html", "caption",
})
_CELLS = frozenset({"td", "th"})
_ASCII_SPACE = re.compile(r"[ \t\r\n\f\v]+")
_QUOTE_MARK = ">\n"
_MAX_DEPTH = 200  # deeper nesting is flattened to its text: no recursion error
_TAG_NAMES: dict[str, str] = {}  # raw tag -> bare lower-case name; a mail has few distinct tags


def html_to_text(markup: str) -> str:
    """The visible text of ``markup``, one line per paragraph, row or ``<br>``."""
    if not markup.strip():
        return ""
    try:
        root = lxml_html.document_fromstring(markup.encode("utf-8", "replace"), parser=_PARSER)
    except (etree.ParserError, ValueError):
        return ""
    parts: list[str] = []
    _walk(root, parts, 0)
    text = "".join(parts).replace("\xa0", " ")
    return "\n".join(line.strip() for line in text.split("\n")).strip("\n")


def _tag(el: etree._Element) -> str:
    tag = el.tag
    if not isinstance(tag, str):  # comments, processing instructions, entities
        return ""
    name = _TAG_NAMES.get(tag)
    if name is None:
        name = tag.rsplit("}", 1)[-1].rsplit(":", 1)[-1].lower()
        if len(_TAG_NAMES) < 4096:  # made-up tags in a hostile mail must not grow it forever
            _TAG_NAMES[tag] = name
    return name


def _soft_break(parts: list[str]) -> None:
    """End the current line unless it is already ended (ignoring layout spaces)."""
    if not parts or parts[-1] == "\n":  # the usual case, as block ends follow block ends
        return
    while parts and parts[-1] != "\n" and not parts[-1].strip(" "):
        parts.pop()
    if parts and parts[-1] != "\n":
        parts.append("\n")


def _text(parts: list[str], text: str | None) -> None:
    if text:
        parts.append(_ASCII_SPACE.sub(" ", text))


def _walk(el: etree._Element, parts: list[str], depth: int) -> None:
    tag = _tag(el)
    if tag in _SKIP or not isinstance(el.tag, str):
        _text(parts, el.tail)
        return
    if depth > _MAX_DEPTH:
        _text(parts, _STRING(el))
    elif tag == "br":
        parts.append("\n")
    elif tag in ("blockquote", "hr"):
        _soft_break(parts)
        parts.append(_QUOTE_MARK)  # what follows is quoted: its text is never read
    elif tag == "tr":
        _soft_break(parts)
        cells = [_cell_text(cell, depth) for cell in el if _tag(cell) in _CELLS]
        parts.append(" ".join(cell for cell in cells if cell))
        _soft_break(parts)
    else:
        block = tag in _BLOCK
        if block:
            _soft_break(parts)
        _children(el, parts, depth)
        if block:
            _soft_break(parts)
    _text(parts, el.tail)


def _children(el: etree._Element, parts: list[str], depth: int) -> None:
    _text(parts, el.text)
    for child in el:
        _walk(child, parts, depth + 1)


def _cell_text(cell: etree._Element, depth: int) -> str:
    parts: list[str] = []
    _children(cell, parts, depth + 1)
    return " ".join("".join(parts).replace("\xa0", " ").split())
