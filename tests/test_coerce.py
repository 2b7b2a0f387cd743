"""Command-line strings become a field's annotated type, whatever its default."""

import pytest

from riscore.coerce import coerce
from riscore.errors import UserError


@pytest.mark.parametrize("value,annotation,expected", [
    ("4", int | None, 4),
    ("none", int | None, None),
    ("NULL", str | None, None),
    ("1,3,5", tuple[int, ...], (1, 3, 5)),
    ("3e-4, 1e-3", tuple[float, ...], (3e-4, 1e-3)),
    ("q,v", tuple[str, ...], ("q", "v")),
    ("false", bool, False),
    ("none", str, "none"),  # a plain str field keeps the word
    ([1, 3], tuple[int, ...], (1, 3)),  # TOML lists become tuples
    (7, int, 7),  # already typed values pass unchanged
])
def test_strings_are_parsed_by_the_annotation(value, annotation, expected):
    assert coerce(value, annotation, "key") == expected


@pytest.mark.parametrize("value,annotation,message", [
    ("inf", float, "key='inf': expected a finite float"),
    ("nan", float | None, "expected a finite float"),
    ("1e-3,inf", tuple[float, ...], "expected comma-separated finite floats"),
    ("yes", bool, "expected a bool"),
    ("2.5", int, "expected an int"),
])
def test_unparseable_or_non_finite_values_are_user_errors(value, annotation, message):
    with pytest.raises(UserError, match=message):
        coerce(value, annotation, "key")


@pytest.mark.parametrize("text", ["2,,4", "2,4,", ",2", " , 2", "2, ,4"])
def test_an_empty_list_item_is_refused_not_dropped(text):
    with pytest.raises(UserError, match="empty item between commas"):
        coerce(text, tuple[int, ...], "--table")


@pytest.mark.parametrize("text,annotation", [("４", int), ("1_000", int), ("1e-3,３e-3", tuple[float, ...]),
                                             ("٣", float)])
def test_numbers_are_plain_ascii(text, annotation):
    with pytest.raises(UserError, match="expected"):
        coerce(text, annotation, "key")
