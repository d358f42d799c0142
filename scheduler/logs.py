"""Structured log lines (key=value) in which a CPR number cannot appear.

The filter masks anything shaped like a CPR number (six digits, an optional
hyphen or space, four digits) in the message and its arguments before any
handler sees it. Code should never log personal data in the first place;
this is the net under it.
"""

from __future__ import annotations

import logging
import sys

from scheduler.cpr import CPR_IN_TEXT as CPR_SHAPE  # every form, dashes and blanks of all kinds


def mask_cpr(text: str) -> str:
    return CPR_SHAPE.sub(lambda m: f"{m.group(1)[:2]}xxxx-xxxx", text)


class CprMaskingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_cpr(message)
        if record.exc_info and record.exc_info[1] is not None:
            # Exception texts may quote input; keep only the type.
            record.exc_text = f"{type(record.exc_info[1]).__name__} (details withheld)"
            record.exc_info = None
        record.msg, record.args = masked, None
        return True


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z")
        line = f"ts={stamp} level={record.levelname.lower()} logger={record.name} msg={_quote(record.getMessage())}"
        if record.exc_text:
            line += f" error={_quote(record.exc_text)}"
        return mask_cpr(line)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def setup_logging(level: str = "INFO", stream=None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    handler.addFilter(CprMaskingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("apscheduler").setLevel("WARNING")
    logging.getLogger("alembic").setLevel("WARNING")
    return handler
