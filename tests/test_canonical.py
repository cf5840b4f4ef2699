"""Python side of the canonical JSON / parameter fingerprint contract.

The shared vector file tests/vectors/param_fingerprint.json is also checked
against PostgreSQL by pgtap/canonical.sql; no database is used here.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from decimal import Decimal
from pathlib import Path

import pytest

from python_runner.canonical import canonical_json, canonical_json_text, param_fingerprint

VECTOR_FILE = Path(__file__).resolve().parent / "vectors" / "param_fingerprint.json"
VECTORS = json.loads(VECTOR_FILE.read_text(encoding="utf-8"))
CASES = VECTORS["cases"]
CASES_BY_NAME = {case["name"]: case for case in CASES}
EMPTY_SHA256 = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_vector_file_shape() -> None:
    assert VECTORS["description"]
    assert len(CASES) >= 40
    assert len(CASES_BY_NAME) == len(CASES), "case names must be unique"
    for case in CASES:
        assert set(case) >= {"name", "input", "canonical", "sha256"}
        assert isinstance(case["input"], str)
        assert case["sha256"] == sha256_hex(case["canonical"]), case["name"]
        if "equivalent_to" in case:
            assert case["equivalent_to"] in CASES_BY_NAME


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_vector_canonical_text(case: dict) -> None:
    assert canonical_json_text(case["input"]) == case["canonical"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_vector_fingerprint(case: dict) -> None:
    params = json.loads(case["input"], parse_float=Decimal)
    assert param_fingerprint(params) == case["sha256"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_vector_canonical_is_fixed_point(case: dict) -> None:
    # Canonical text is valid JSON and canonicalizes to itself.
    assert canonical_json_text(case["canonical"]) == case["canonical"]


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if "equivalent_to" in c],
    ids=[c["name"] for c in CASES if "equivalent_to" in c],
)
def test_vector_equivalences(case: dict) -> None:
    other = CASES_BY_NAME[case["equivalent_to"]]
    assert case["canonical"] == other["canonical"]
    assert case["sha256"] == other["sha256"]


@pytest.mark.parametrize(
    "variants",
    [
        ['{"a":1,"b":2}', '{"b":2,"a":1}', ' { "b" : 2 ,\n "a" : 1 } ', '{"a":1,"b":3,"b":2}'],
        ['{"b":1,"aa":2}', '{"aa":2,"b":1}'],
        ['{"x":{"q":[1,{"d":1,"c":2}],"p":null}}', '{"x":{"p":null,"q":[1,{"c":2,"d":1}]}}'],
        ['{"n":1}', '{"n":1.0}', '{"n":1.00}', '{"n":1e0}', '{"n":10E-1}', '{"n":0.1e1}', '{"n":1E+0}'],
        ['{"n":0}', '{"n":-0}', '{"n":-0.0}', '{"n":0e10}', '{"n":-0.000e-3}'],
        ['{"n":100}', '{"n":1e2}', '{"n":1E+2}', '{"n":100.000}', '{"n":0.1e3}'],
        ['{"n":0.00000015}', '{"n":1.5e-7}', '{"n":15E-8}', '{"n":0.000000150}'],
        ['{"s":"\\u00e9"}', '{"s":"\\u00E9"}', '{"s":"é"}'],
    ],
)
def test_variants_give_equal_fingerprints(variants: list) -> None:
    canon = {canonical_json_text(v) for v in variants}
    assert len(canon) == 1, canon
    prints = {param_fingerprint(json.loads(v, parse_float=Decimal)) for v in variants}
    assert prints == {sha256_hex(canon.pop())}


def test_array_order_matters() -> None:
    assert param_fingerprint({"v": [1, 2]}) != param_fingerprint({"v": [2, 1]})


def test_key_case_matters() -> None:
    assert param_fingerprint({"a": 1}) != param_fingerprint({"A": 1})


def test_none_params_equal_empty_object() -> None:
    assert param_fingerprint(None) == param_fingerprint({}) == EMPTY_SHA256
    assert canonical_json({}) == "{}"


def test_python_values() -> None:
    value = OrderedDict(
        [
            ("z", [True, False, None]),
            ("b", 1.0),
            ("aa", Decimal("1.50")),
            ("a", 0.1),
            ("big", 2**70),
            ("neg0", -0.0),
            ("t", ("x", 1e16)),
            ("d", Decimal("1E+2")),
            ("tiny", 1.5e-7),
        ]
    )
    assert canonical_json(value) == (
        '{"a":0.1,"aa":1.5,"b":1,"big":1180591620717411303424,"d":100,'
        '"neg0":0,"t":["x",10000000000000000],"tiny":0.00000015,"z":[true,false,null]}'
    )


def test_bool_is_not_a_number() -> None:
    assert canonical_json({"t": True, "f": False, "one": 1}) == '{"f":false,"one":1,"t":true}'


def test_float_uses_shortest_repr() -> None:
    assert canonical_json(0.1 + 0.2) == "0.30000000000000004"
    assert canonical_json(1e300) == "1" + "0" * 300


def test_huge_integer_exact() -> None:
    n = 10**5000 + 1  # beyond Python's default int/str digit limit
    assert canonical_json(n) == "1" + "0" * 4999 + "1"
    assert canonical_json_text("1" + "0" * 5000) == "1" + "0" * 5000
    assert canonical_json_text("-1" + "0" * 5000 + ".000") == "-1" + "0" * 5000


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), Decimal("NaN"), Decimal("-Infinity"), Decimal("sNaN")])
def test_non_finite_numbers_raise(bad: object) -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": bad})
    with pytest.raises(ValueError):
        param_fingerprint({"x": [bad]})


@pytest.mark.parametrize("text", ['{"x":NaN}', '{"x":Infinity}', '{"x":-Infinity}'])
def test_non_finite_json_text_raises(text: str) -> None:
    with pytest.raises(ValueError):
        canonical_json_text(text)


def test_non_str_key_raises_type_error_naming_key() -> None:
    with pytest.raises(TypeError, match="42"):
        canonical_json({"a": {42: "x"}})
    with pytest.raises(TypeError, match="None"):
        param_fingerprint({None: 1})


def test_unsupported_types_raise() -> None:
    with pytest.raises(TypeError):
        canonical_json({"s": {1, 2}})
    with pytest.raises(TypeError):
        canonical_json(b"bytes")
    with pytest.raises(TypeError):
        param_fingerprint([1, 2])  # params must be an object


@pytest.mark.parametrize("text", ['{"s":"\\u0000"}', '{"s":"\\ud800"}', '{"\\udc00":1}'])
def test_strings_jsonb_cannot_hold_raise(text: str) -> None:
    with pytest.raises(ValueError):
        canonical_json_text(text)


def test_numeric_range_mirrors_postgres() -> None:
    # Accepted by PostgreSQL numeric ...
    assert canonical_json_text("1e131071") == "1" + "0" * 131071
    assert canonical_json_text("1e-16383") == "0." + "0" * 16382 + "1"
    assert canonical_json_text("0e999999") == "0"
    # ... and rejected by it ("value overflows numeric format").
    for text in ["1e131072", "1.0e-16383", "0e-16384", "1e999999999999999999999"]:
        with pytest.raises(ValueError):
            canonical_json_text(text)


def test_circular_reference_raises() -> None:
    loop: list = []
    loop.append(loop)
    with pytest.raises(ValueError):
        canonical_json(loop)


def test_shared_subobjects_are_fine() -> None:
    shared = {"k": 1}
    assert canonical_json({"a": shared, "b": [shared, shared]}) == '{"a":{"k":1},"b":[{"k":1},{"k":1}]}'


def test_string_escaping() -> None:
    s = "".join(chr(i) for i in range(0x20)) + '"\\/\x7f\u2028é😀'
    with pytest.raises(ValueError):
        canonical_json(s)  # U+0000 cannot be stored in jsonb
    out = canonical_json(s[1:])
    expected = (
        '"\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r'
        '\\u000e\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017'
        '\\u0018\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f\\"\\\\/\x7f\u2028é😀"'
    )
    assert out == expected


def test_key_order_is_code_point_order() -> None:
    keys = ["\ue000", "\U0001f600", "\uff5a", "a", "B", "aa", "b", "é", "e\u0301"]
    out = canonical_json({k: 0 for k in keys})
    assert out == canonical_json({k: 0 for k in sorted(keys, key=lambda k: k.encode("utf-8"))})
    assert out.index("\ue000") < out.index("\U0001f600")  # not UTF-16 order
