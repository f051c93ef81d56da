"""The numeric argument checks shared by the hook and the operators."""

from __future__ import annotations

import math
from typing import Any

import pytest

from airflow_provider_cfimages.exceptions import CloudflareImagesConfigError
from airflow_provider_cfimages.utils.validation import check_choice, check_positive, check_whole


@pytest.mark.parametrize("value", [0, -1, -0.5, math.nan, math.inf, True, "5", None, [1]])
def test_check_positive_refuses_anything_but_a_finite_number_above_zero(value: Any) -> None:
    with pytest.raises(CloudflareImagesConfigError, match=r"timeout must be a positive number"):
        check_positive("timeout", value)


@pytest.mark.parametrize(("value", "expected"), [(1, 1.0), (0.25, 0.25), (240, 240.0)])
def test_check_positive_returns_a_float(value: Any, expected: float) -> None:
    assert check_positive("timeout", value) == expected
    assert type(check_positive("timeout", value)) is float


def test_check_positive_describes_what_is_expected_and_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"rate must be requests per minute; got -2\.") as err:
        check_positive("rate", -2, expected="requests per minute")
    assert isinstance(err.value, CloudflareImagesConfigError)


@pytest.mark.parametrize("value", [-1, 1.0, True, "3", None])
def test_check_whole_refuses_non_integers_and_values_below_the_minimum(value: Any) -> None:
    with pytest.raises(CloudflareImagesConfigError, match=r"max_retries must be a whole number"):
        check_whole("max_retries", value, minimum=0)


def test_check_whole_returns_the_value() -> None:
    assert check_whole("max_retries", 0, minimum=0) == 0
    assert check_whole("sample_size", 7, minimum=1) == 7


@pytest.mark.parametrize(("value", "expected"), [("asc", "asc"), (" DESC ", "desc")])
def test_check_choice_returns_the_stripped_lower_case_choice(value: str, expected: str) -> None:
    assert check_choice("order", value, ("asc", "desc"), expected="asc or desc") == expected


@pytest.mark.parametrize("value", ["up", "", None, 1, ["asc"]])
def test_check_choice_names_the_argument_and_raises_the_given_error(value: Any) -> None:
    with pytest.raises(CloudflareImagesConfigError, match=r"^order must be asc or desc; got "):
        check_choice("order", value, ("asc", "desc"), expected="asc or desc")
    with pytest.raises(KeyError, match=r"order must be asc or desc"):
        check_choice("order", value, ("asc", "desc"), expected="asc or desc", error=KeyError)
