"""``printable``: a file's control characters never reach a terminal, a log or an SNS message raw (issue 22)."""

from __future__ import annotations

import pytest

from include.retail.platform.text import printable


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),  # clear the screen, cursor home
        ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),  # OSC: set the terminal's title, then BEL
        ("\x9b2J", "\\x9b2J"),  # the C1 CSI: the same as ESC [ on some terminals
        ("paid\rREFUND", "paid\\rREFUND"),  # CR: overwrite the line
        ("a\nb\tc\x00d\x7f\x85", "a\\nb\\tc\\x00d\\x7f\\x85"),
        ("abc\u202edcba", "abc\\u202edcba"),  # right-to-left override
        ("\u2066x\u2069 \u200bhidden\ufeff\u00ad", "\\u2066x\\u2069 \\u200bhidden\\ufeff\\xad"),
        ("line\u2028separator\u2029", "line\\u2028separator\\u2029"),
        ("tag\U000e0041", "tag\\U000e0041"),
        ("lone \ud800 surrogate", "lone \\ud800 surrogate"),
    ],
)
def test_each_character_that_acts_or_hides_is_shown_as_its_escape(raw: str, shown: str) -> None:
    assert printable(raw) == shown
    assert printable(shown) == shown  # printable already: twice is once
    assert printable(raw).isprintable()


@pytest.mark.parametrize(
    "text",
    [
        "incoming/online_retail.xlsx: COPY 250,000 of 541,909 rows",
        "CRÈME BRÛLÉE · ÉCLAIR 50% off, 3×2 £4.95 ¥ 東京\u3000x\u00a0y",  # letters, symbols, other spaces
        "C:\\path\\x1b is a backslash, not an ESC",
        "👍🏽 ok",
        "",
    ],
)
def test_ordinary_text_is_unchanged(text: str) -> None:
    assert printable(text) == text


def test_kept_characters_stay_as_they_are() -> None:
    assert printable("line 1\nline 2\x1b[2J\r\n", keep="\n") == "line 1\nline 2\\x1b[2J\\r\n"
