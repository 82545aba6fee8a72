"""Files named .xlsx that are something else, or that declare XML entities, are rejected with what they are and
what to do, in one line without the reader's internals (issue 22). Each file is made here by the tool that makes
it for real: xlwt writes Excel 97-2003, msoffcrypto-tool encrypts as Excel does with a password."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from include.retail.ingest.contract import FileRejected
from include.retail.ingest.sandboxed_read import read_typed
from tests.hostile_files import HEADER, ROW, row_xml, write_raw_workbook

# Entities nest ten deep in a billion-laughs bomb; three levels show the shape.
ENTITY_BOMB = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    b'<!DOCTYPE worksheet [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
)


def rejection(path: Path, key: str) -> str:
    with pytest.raises(FileRejected) as rejected:
        read_typed(path, key).close()
    return rejected.value.reason


def legacy_xls(path: Path) -> Path:
    import xlwt

    book = xlwt.Workbook()
    sheet = book.add_sheet("Online Retail")
    for column, heading in enumerate(HEADER):
        sheet.write(0, column, heading)
    for column, value in enumerate([*ROW, "United Kingdom"]):
        sheet.write(1, column, str(value))
    book.save(str(path))
    return path


def encrypted_xlsx(path: Path) -> Path:
    from msoffcrypto.format.ooxml import OOXMLFile

    plain = write_raw_workbook(path.with_name("plain.xlsx"), [row_xml(1, [*HEADER]), row_xml(2, [*ROW, "France"])])
    encrypted = io.BytesIO()
    with plain.open("rb") as handle:
        OOXMLFile(handle).encrypt("secret", encrypted)
    path.write_bytes(encrypted.getvalue())
    return path


def entity_bomb(path: Path, part: str) -> Path:
    write_raw_workbook(path, [row_xml(1, [*HEADER]), row_xml(2, [*ROW, "&lol3;"])], dimension="A1:H2")
    with zipfile.ZipFile(path) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    body = parts[part].split(b"?>", 1)[1] if parts[part].startswith(b"<?xml") else parts[part]
    parts[part] = ENTITY_BOMB + body
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    return path


def test_an_xls_renamed_xlsx_is_called_what_it_is(tmp_path: Path) -> None:
    reason = rejection(legacy_xls(tmp_path / "old.xlsx"), "incoming/old.xlsx")
    assert reason == "an Excel 97-2003 workbook (.xls) named .xlsx: save it as an Excel Workbook (.xlsx), or as CSV"


def test_a_password_protected_workbook_is_called_what_it_is(tmp_path: Path) -> None:
    reason = rejection(encrypted_xlsx(tmp_path / "locked.xlsx"), "incoming/locked.xlsx")
    assert reason.startswith("a password-protected (encrypted) workbook, which cannot be read without its password")
    assert "truncated" not in reason


def test_an_entity_bomb_is_rejected_unread_in_one_line(tmp_path: Path) -> None:
    reason = rejection(entity_bomb(tmp_path / "bomb.xlsx", "xl/worksheets/sheet1.xml"), "incoming/bomb.xlsx")
    assert reason.startswith("xl/worksheets/sheet1.xml declares XML entities (a <!DOCTYPE>)")
    assert "\n" not in reason
    assert "calamine" not in reason


def test_a_reader_error_is_one_line_without_its_context() -> None:
    from include.retail.ingest.workbook_limits import unreadable_workbook

    error = Exception("calamine error: Xlsx error: Xml error: at 0..0: unexpected EOF\nContext:\n    0: Error while")
    assert unreadable_workbook(error) == (
        "truncated or not an .xlsx workbook (calamine error: Xlsx error: Xml error: at 0..0: unexpected EOF)"
    )
