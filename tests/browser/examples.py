"""The README's demo quarter (``examples/quarter.py``, a plain script) as a module for the tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_PATH = Path(__file__).resolve().parents[2] / "examples" / "quarter.py"
_SPEC = importlib.util.spec_from_file_location("sparring_example_quarter", _PATH)
quarter = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = quarter  # dataclasses and pickling look a module up by name
_SPEC.loader.exec_module(quarter)
