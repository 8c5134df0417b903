"""CSV exports: RFC 4180 text with no cell a spreadsheet would run as a formula."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from application.usage_service import CSV_HEADER, csv_writer, spreadsheet_safe

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@pytest.mark.parametrize(
    "value", ["=SUM(A1:A9)", "+1", "-1.5", "@cmd", "\tx", "\rx", "=", "-"]
)
def test_a_value_a_spreadsheet_would_run_is_escaped_with_a_quote(value: str) -> None:
    assert spreadsheet_safe(value) == "'" + value


@pytest.mark.parametrize(
    "value", ["", "compute", "12.5", "2026-11-20", "ws_a", " =x", "a=b", "'=x", "\n=x"]
)
def test_a_harmless_value_is_left_as_is(value: str) -> None:
    assert spreadsheet_safe(value) == value


@given(st.text())
def test_no_escaped_value_starts_a_formula(value: str) -> None:
    safe = spreadsheet_safe(value)

    assert not safe.startswith(FORMULA_STARTS)
    assert safe in (value, "'" + value)


def written(*rows: tuple[str, ...]) -> str:
    buffer = io.StringIO()
    writer = csv_writer(buffer)
    for row in rows:
        writer.writerow(row)
    return buffer.getvalue()


def test_the_header_is_one_crlf_terminated_line() -> None:
    assert written(CSV_HEADER) == (
        "workspace_id,product_area,usage_date,unit,quantity,source_event_count\r\n"
    )


def test_lines_end_with_crlf() -> None:
    assert written(("a", "b"), ("c", "d")) == "a,b\r\nc,d\r\n"


def test_only_fields_with_commas_quotes_or_line_breaks_are_quoted() -> None:
    row = ("plain", "a,b", 'say "hi"', "two\nlines", "cr\rhere", "")

    assert written(row) == ('plain,"a,b","say ""hi""","two\nlines","cr\rhere",\r\n')


cells = st.text(alphabet=st.characters(exclude_characters="\x00"))


@given(st.lists(st.lists(cells, min_size=1, max_size=6), max_size=5))
def test_any_rows_read_back_as_written(rows: list[list[str]]) -> None:
    text = written(*(tuple(r) for r in rows))

    read = list(csv.reader(io.StringIO(text, newline=""), strict=True))

    assert read == rows
