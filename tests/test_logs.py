import io
import logging
import re

from hypothesis import given
from hypothesis import strategies as st

from scheduler.logs import mask_cpr, setup_logging

CPR = re.compile(r"\d{6}-?\d{4}")


WORDS = st.text(alphabet=st.characters(blacklist_categories=("Nd",)), max_size=20)


@given(st.from_regex(r"\A\d{6}[- ]?\d{4}\Z"), WORDS, WORDS)
def test_mask_leaves_no_cpr(cpr, before, after):
    masked = mask_cpr(f"{before} {cpr} {after}")
    assert cpr not in masked and cpr[-4:] not in masked


def test_logged_cpr_is_masked_in_message_args_and_exceptions():
    stream = io.StringIO()
    setup_logging("DEBUG", stream)
    log = logging.getLogger("sparring.test")
    log.info("item for 120502-4127 accepted")
    log.warning("values %s and %s", "1205024127", {"cpr": "120502 4127"})
    try:
        raise ValueError("bad 120502-4127")
    except ValueError:
        log.exception("failed")
    out = stream.getvalue()
    assert "4127" not in out and not CPR.search(out)
    assert out.count("\n") == 3 and "ValueError" in out
