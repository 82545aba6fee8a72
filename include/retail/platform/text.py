"""Text that came from outside (a file's values, its name, an error about it), made safe to print or send.

A workbook's cell, header or sheet name can hold any character, and some act instead of showing: ESC starts a
terminal's escape sequences (``ESC[2J`` clears the screen), CR rewrites the line, a bidi override reorders what
follows, a zero-width character hides text. Wherever such text reaches a terminal, an SNS message or a log, it
goes through ``printable``, which shows those characters as escapes a reader can see and none of them acts.
"""

from __future__ import annotations

import unicodedata

# The Unicode categories shown escaped: controls (C0, DEL, C1: ESC, CR, BEL, CSI U+009B, NEL U+0085), format
# characters (bidi overrides and isolates, zero-width spaces and joiners, soft hyphen, BOM, tag characters),
# surrogates, private use, unassigned code points, and the line and paragraph separators U+2028 and U+2029.
# Spaces (Zs) stay as they are: they move nothing but the cursor, one cell.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def printable(text: str, keep: str = "") -> str:
    """``text`` with each character that acts or hides shown as its Python escape (``\\x1b``, ``\\r``,
    ``\\u202e``); ``keep`` names characters left as they are (a message body keeps its ``\\n``).

    Printable text comes back unchanged, so applying it twice is the same as once. A backslash already in the
    text stays as it is: the escapes are for a reader's eye, not to be parsed back."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(
        char if char in keep or unicodedata.category(char) not in _ESCAPED_CATEGORIES else ascii(char)[1:-1]
        for char in text
    )
