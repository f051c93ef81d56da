"""csv_text: byte for byte what csv.writer writes, for any values and columns."""

from __future__ import annotations

import csv
import io
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_cfimages.inventory.csv_text import csv_cell, csv_header, csv_rows

# Text that the default dialect has to quote turns up often, not once in a blue moon.
# (No NUL: csv.writer refuses it before Python 3.11, so there is nothing to compare with.)
awkward_text = st.text(alphabet=st.sampled_from("ab ,\"\r\n'é€\t"), max_size=6) | st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\x00")
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | awkward_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(awkward_text, inner, max_size=3),
    max_leaves=6,
)
column_names = st.lists(awkward_text.filter(bool), min_size=1, max_size=4, unique=True)


def csv_writer_bytes(rows: list[list[Any]]) -> bytes:
    text = io.StringIO(newline="")
    csv.writer(text).writerows(rows)
    return text.getvalue().encode("utf-8")


@settings(deadline=None)  # timing varies on a loaded CI machine
@given(columns=column_names, data=st.data())
def test_rows_are_what_csv_writer_writes(columns: list[str], data: st.DataObject) -> None:
    image = st.dictionaries(st.sampled_from([*columns, "other"]), json_values, max_size=5)
    images = data.draw(st.lists(image, max_size=8))

    expected = csv_writer_bytes(
        [[csv_cell(image.get(name)) for name in columns] for image in images]
    )

    assert csv_rows(images, columns) == expected


@settings(deadline=None)  # timing varies on a loaded CI machine
@given(columns=column_names)
def test_the_header_is_what_csv_writer_writes(columns: list[str]) -> None:
    assert csv_header(columns) == csv_writer_bytes([columns])


def test_a_lone_empty_cell_is_quoted_so_the_row_is_not_blank() -> None:
    rows = csv_rows([{"creator": None}, {"creator": ""}, {}, {"creator": "ann"}], ["creator"])

    assert rows == b'""\r\n""\r\n""\r\nann\r\n'
    assert list(csv.reader(io.StringIO(rows.decode(), newline=""))) == [[""], [""], [""], ["ann"]]


def test_only_the_cells_that_need_it_are_quoted() -> None:
    images = [
        {"id": "a", "filename": "plain.png", "meta": {"k": 'say "hi"'}},
        {"id": "b", "filename": "x, y.png", "meta": None},
    ]

    rows = csv_rows(images, ["id", "filename", "meta"])

    assert rows == (
        b'a,plain.png,"{""k"":""say \\""hi\\""""}"\r\n'  # JSON escapes the quote, CSV doubles it
        b'b,"x, y.png",\r\n'
    )


def test_no_images_give_no_bytes() -> None:
    assert csv_rows([], ["id"]) == b""
