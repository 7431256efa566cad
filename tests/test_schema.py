"""The typed checker behind every component's options: strict types, ranges, one line."""

from collections.abc import Sequence
from typing import Annotated, Literal

import pytest

from regrun.errors import RegrunError
from regrun.schema import FRACTION, POSITIVE, AtLeast, Range, check, check_options, describe

WIDTHS = Annotated[Sequence[int], AtLeast(1)]
DROPOUT = Annotated[float, Range(0, 1, hi_open=True)]


def builder(input_shape, num_outputs, hidden: WIDTHS = (8,), dropout: DROPOUT = 0.0,
            norm: Literal["batch", "none"] = "none", bias: bool = True, lr=1e-3, betas=(0.9, 0.999),
            tag: str | None = None):
    """A stand-in for a model or optimizer builder."""


@pytest.mark.parametrize(("key", "value", "message"), [
    ("hidden", [64, 0], "m.hidden must be a list of integers ≥ 1, got [64, 0]"),
    ("hidden", 64, "m.hidden must be a list of integers ≥ 1, got 64"),
    ("hidden", [64.0], "m.hidden must be a list of integers ≥ 1, got [64.0]"),
    ("dropout", 1.0, "m.dropout must be a number in [0, 1), got 1.0"),
    ("dropout", "0.5", "m.dropout must be a number in [0, 1), got '0.5'"),
    ("dropout", True, "m.dropout must be a number in [0, 1), got True"),
    ("norm", "group", "m.norm: unknown norm 'group'; allowed: batch, none"),
    ("bias", "true", "m.bias must be true or false, got 'true'"),
    ("bias", 1, "m.bias must be true or false, got 1"),
    ("lr", "1e-3", "m.lr must be a number, got '1e-3'"),
    ("betas", [0.9], "m.betas must be a list of 2 (a number, a number), got [0.9]"),
    ("tag", 3, "m.tag must be a string or null, got 3"),
])
def test_a_value_of_the_wrong_type_or_range_names_key_value_and_what_is_allowed(key, value, message) -> None:
    with pytest.raises(RegrunError) as err:
        check_options(builder, {key: value}, "m")
    assert str(err.value) == message


def test_good_values_pass_and_sequences_arrive_as_lists() -> None:
    options = {"hidden": (64, 32), "dropout": 0, "norm": "batch", "bias": False, "lr": 1, "betas": [0.5, 0.9],
               "tag": None}
    assert check_options(builder, options, "m") == options | {"hidden": [64, 32]}


def test_an_unknown_type_is_left_to_the_builder() -> None:
    assert check("x", object, type) is object


@pytest.mark.parametrize(("hint", "text"), [
    (Annotated[float, POSITIVE], "a finite number > 0"),
    (Annotated[int, AtLeast(1)], "a positive integer"),
    (Annotated[int, AtLeast(0), "0: never"], "an integer ≥ 0 (0: never)"),
    (Literal[True, False, "adaptive"], "one of true, false, adaptive"),
    (Annotated[float, FRACTION], "a number in [0, 1]"),
    (Annotated[int, Range(0, 2**32 - 1)], "an integer in [0, 4294967295]"),
    (int | None, "an integer or null"),
])
def test_descriptions_read_as_english(hint, text) -> None:
    assert describe(hint) == text
