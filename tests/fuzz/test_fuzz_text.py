"""The ``--missing`` parser and recipe loading under hostile text."""
from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import numpy as np
import yaml
from harness import check, fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from ldm_med.config import load_config
from ldm_med.masks import parse_missing_spec

REPO = Path(__file__).resolve().parents[2]
RECIPES = [yaml.safe_load(p.read_text()) for p in sorted((REPO / "configs").glob("*.yaml"))]  # a snapshot
TOKENS = st.sampled_from(["3", "0", "-", ",", "10-14", "keep-every:", "keep_every", ":", "4", " ", "auto",
                          "none", "9" * 5000, "1" * 30, "\u0663", "\x00", "-1", "2-1", "keep-every:4:1",
                          "keepevery:0", "１", "²", "1e3", "0x10", "\n"])
SPECS = st.one_of(st.text(max_size=40), st.lists(TOKENS, max_size=8).map("".join))


def _valid_mask(n: int):
    def valid(mask) -> None:
        assert isinstance(mask, np.ndarray) and mask.dtype == bool and mask.shape == (n,)
    return valid


@fuzz_settings(quick=150)
@given(SPECS, st.one_of(st.integers(1, 64), st.sampled_from([1, 2, 10**6])))
def test_missing_spec(spec, n):
    # an InputError about a spec names the spec's offending token, or says what is wrong with it
    tokens = [t.strip() for t in spec.split(",")]
    names = tokens + [repr(t)[1:-1] for t in tokens] + ["specification", "slice", "keep", "'auto'"]
    check("missing-spec", lambda: parse_missing_spec(spec, n), names, _valid_mask(n))


HOSTILE_VALUES = st.one_of(
    st.sampled_from([None, -1, 0, 10**12, 10**400, float("nan"), float("inf"), "", "x" * 1000, [], {}, [[]],
                     True, "../../etc/passwd", "/dev/zero", [1] * 5, {"a": {"b": {}}}]),
    st.integers(), st.floats(), st.text(max_size=20))


def _paths(node, prefix=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield prefix + (i,)
            yield from _paths(v, prefix + (i,))


@st.composite
def recipes(draw) -> str:
    kind = draw(st.sampled_from(["mutated"] * 5 + ["text", "bomb", "binary"]))
    if kind == "text":
        return draw(st.text(max_size=200))
    if kind == "binary":
        return draw(st.binary(max_size=200)).decode("latin-1")
    if kind == "bomb":  # billion laughs: aliases nest without growing the file
        levels = draw(st.integers(2, 9))
        lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
        lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
        return "\n".join(lines + [f"kind: refiner\nmodel: {{channels: *a{levels - 1}, depth: 3}}"])
    data = copy.deepcopy(draw(st.sampled_from(RECIPES)))
    for _ in range(draw(st.integers(1, 4))):
        paths = list(_paths(data))
        path = draw(st.sampled_from(paths))
        node = data
        for key in path[:-1]:
            node = node[key]
        if draw(st.booleans()):
            node[path[-1]] = copy.deepcopy(draw(HOSTILE_VALUES))  # the constants stay unchanged
        elif isinstance(node, dict):
            del node[path[-1]]
    try:
        return yaml.safe_dump(data)
    except (yaml.YAMLError, OverflowError, ValueError):
        return "kind: refiner\n"


@fuzz_settings(quick=100)
@given(recipes())
def test_recipe_loading(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "recipe.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        check("recipe", lambda: load_config(path), [path])
