"""Slice masks: the --missing parser, detection of missing/corrupt slices, random gap patterns."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ldm_med.data.phantoms import ct_body
from ldm_med.errors import InputError
from ldm_med.masks import (
    GAP_PATTERNS,
    detect_missing,
    format_indices,
    keep_every,
    parse_missing_spec,
    random_blocks,
    random_drop,
    sample_training_mask,
)
from ldm_med.volume import Volume


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of each run of True."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return []
    cuts = np.flatnonzero(np.diff(idx) != 1)
    starts = np.r_[idx[0], idx[cuts + 1]]
    ends = np.r_[idx[cuts], idx[-1]]
    return [(int(a), int(b - a + 1)) for a, b in zip(starts, ends)]


# -- parse_missing_spec ---------------------------------------------------------------------------
def test_indices_and_ranges():
    mask = parse_missing_spec("3,7,10-14", 20)
    assert mask.dtype == bool and mask.shape == (20,)
    assert np.flatnonzero(mask).tolist() == [3, 7, 10, 11, 12, 13, 14]


def test_whitespace_and_case_tolerant():
    expected = parse_missing_spec("3,7,10-14", 20)
    assert np.array_equal(parse_missing_spec("  3 , 7,\t10 - 14 ", 20), expected)
    assert not parse_missing_spec(" None ", 5).any()
    assert np.array_equal(parse_missing_spec("Keep-Every : 4", 9), parse_missing_spec("keep-every:4", 9))


def test_keep_every_forms():
    assert np.flatnonzero(~parse_missing_spec("keep-every:4", 10)).tolist() == [0, 4, 8]
    assert np.flatnonzero(~parse_missing_spec("keep-every:4:1", 10)).tolist() == [1, 5, 9]
    assert np.flatnonzero(~parse_missing_spec("keep_every:3:2", 10)).tolist() == [2, 5, 8]


def test_none_and_overlaps():
    assert parse_missing_spec("none", 7).tolist() == [False] * 7
    assert np.flatnonzero(parse_missing_spec("2-4,3,4-5", 8)).tolist() == [2, 3, 4, 5]
    assert parse_missing_spec("0-9", 10).all()  # everything missing is a valid parse


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("3,x", "'x'"),
        ("5-2", "'5-2'"),
        ("20", "0..19"),
        ("3,25-30", "0..19"),
        ("", "empty"),
        ("3,,4", "empty entry"),
        ("3,", "empty entry"),
        ("-3", "'-3'"),
        ("3.5", "'3.5'"),
        ("keep-every:1", "K >= 2"),
        ("keep-every:4:4", "OFFSET"),
        ("keep-every", "keep-every:K"),
        ("keep-every:x", "keep-every:K"),
        ("none,3", "'none'"),
    ],
)
def test_errors_name_the_token_and_the_valid_forms(spec, fragment):
    with pytest.raises(InputError) as err:
        parse_missing_spec(spec, 20)
    assert fragment in str(err.value)


def test_auto_needs_a_volume_and_finds_planted_gaps():
    with pytest.raises(InputError, match="needs the volume"):
        parse_missing_spec("auto", 12)
    vol = ct_body((32, 32, 12), seed=3)
    with pytest.raises(InputError, match="found no missing"):
        parse_missing_spec("auto", 12, vol)
    vol.data[:, :, 5] = np.nan
    assert np.flatnonzero(parse_missing_spec(" AUTO ", 12, vol)).tolist() == [5]


@given(st.lists(st.booleans(), min_size=1, max_size=80))
def test_format_indices_round_trip(bits):
    mask = np.array(bits)
    text = format_indices(mask)
    assert np.array_equal(parse_missing_spec(text, mask.size), mask)


def test_format_indices_examples():
    mask = np.zeros(20, bool)
    mask[[3, 7, 10, 11, 12, 13, 14, 17, 18]] = True
    assert format_indices(mask) == "3,7,10-14,17,18"
    assert format_indices(np.zeros(4, bool)) == "none"


def test_format_indices_takes_indices_as_well_as_masks():
    mask = np.zeros(20, bool)
    mask[[3, 7, 10, 11, 12, 13, 14, 17, 18]] = True
    assert format_indices([14, 3, 7, 10, 11, 12, 13, 17, 18]) == format_indices(mask)
    assert format_indices(np.flatnonzero(mask)) == "3,7,10-14,17,18"
    assert format_indices([]) == "none"


@given(n=st.integers(1, 200), data=st.data())
def test_ranges_cover_exactly(n, data):
    a = data.draw(st.integers(0, n - 1))
    b = data.draw(st.integers(a, n - 1))
    mask = parse_missing_spec(f"{a}-{b}", n)
    assert np.flatnonzero(mask).tolist() == list(range(a, b + 1))


@given(n=st.integers(1, 200), extra=st.integers(0, 10 ** 6))
def test_out_of_range_is_an_input_error(n, extra):
    with pytest.raises(InputError, match=f"0..{n - 1}"):
        parse_missing_spec(str(n + extra), n)
    with pytest.raises(InputError, match=f"0..{n - 1}"):
        parse_missing_spec(f"0-{n + extra}", n)


_SPEC_CHARS = st.sampled_from(
    list("0123456789,-: \t") + ["keep-every", "auto", "none", "x", "é", "٣", "²"])


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=30), st.lists(_SPEC_CHARS, max_size=12).map("".join)),
       st.integers(1, 60))
def test_never_crashes_with_anything_but_input_error(spec, n):
    try:
        mask = parse_missing_spec(spec, n)
    except InputError:
        return
    assert mask.dtype == bool and mask.shape == (n,)
    assert mask.any() or spec.strip().lower() == "none"


# -- detect_missing -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clean_ct() -> Volume:
    return ct_body((48, 48, 24), seed=11)


def test_detect_nothing_on_clean_phantoms(clean_ct):
    from ldm_med.data import mr_head

    assert not detect_missing(clean_ct).any()
    assert not detect_missing(mr_head((40, 40, 20), seed=2)).any()


@pytest.mark.parametrize(
    "plant",
    [
        lambda s: s.fill(np.nan),  # all NaN
        lambda s: s.__setitem__((3, 4), np.inf),  # one inf is enough
        lambda s: s.__setitem__((0, 0), -np.inf),
        lambda s: s.fill(0.0),  # blank
        lambda s: s.fill(-1024.0),  # constant padding
        lambda s: s.fill(32767.0),  # saturated
        lambda s: s.__imul__(1000.0),  # wrongly scaled by orders of magnitude
    ],
)
def test_detect_planted_corruption(clean_ct, plant):
    vol = clean_ct.with_data(clean_ct.data.copy())
    plant(vol.data[:, :, 9])
    assert np.flatnonzero(detect_missing(vol)).tolist() == [9]


def test_detect_not_acquired_and_other_slice_axes(clean_ct):
    acquired = np.ones(24, bool)
    acquired[[2, 20]] = False
    vol = clean_ct.with_data(clean_ct.data.copy(), acquired=acquired)
    assert np.flatnonzero(detect_missing(vol)).tolist() == [2, 20]
    moved = Volume(np.moveaxis(clean_ct.data, 2, 0).copy(), slice_axis=0)
    moved.data[7] = 0.0
    assert np.flatnonzero(detect_missing(moved)).tolist() == [7]


# -- random masks -----------------------------------------------------------------------------------
@given(st.integers(1, 300), st.integers(1, 12), st.data())
def test_keep_every_invariants(n, k, data):
    offset = data.draw(st.integers(0, k - 1))
    mask = keep_every(n, k, offset)
    kept = np.flatnonzero(~mask)
    assert kept.tolist() == list(range(offset, n, k))


@given(st.integers(0, 300), st.floats(0, 1), st.integers(0, 2 ** 32 - 1))
def test_random_drop_count_and_determinism(n, fraction, seed):
    mask = random_drop(n, fraction, np.random.default_rng(seed))
    assert mask.sum() == int(round(fraction * n))
    assert np.array_equal(mask, random_drop(n, fraction, np.random.default_rng(seed)))


@given(st.integers(1, 300), st.integers(1, 8), st.floats(0.01, 1), st.integers(0, 5),
       st.integers(0, 2 ** 32 - 1))
def test_random_blocks_are_exact_separated_runs(n, block, fraction, start, seed):
    mask = random_blocks(n, block, fraction, np.random.default_rng(seed), start=start)
    runs = _runs(mask)
    assert all(length == block for _, length in runs)
    assert all(s >= start for s, _ in runs)
    if n - start >= block:
        assert runs, "at least one block when one fits"


@settings(max_examples=300)
@given(st.integers(3, 400), st.integers(0, 2 ** 32 - 1))
def test_training_masks_leave_two_acquired_and_one_missing(n, seed):
    mask = sample_training_mask(n, np.random.default_rng(seed))
    assert mask.shape == (n,) and mask.dtype == bool
    assert (~mask).sum() >= 2
    assert mask.sum() >= 1
    assert np.array_equal(mask, sample_training_mask(n, np.random.default_rng(seed)))


def test_training_masks_cover_the_mixture():
    rng = np.random.default_rng(0)
    masks = [sample_training_mask(64, rng) for _ in range(400)]
    fractions = np.array([m.mean() for m in masks])
    assert (fractions > 0.95).sum() >= 5  # all-but-2 appears, rarely
    assert (fractions > 0.95).sum() <= 45
    assert fractions.min() < 0.2 and np.median(fractions) > 0.3
    with pytest.raises(ValueError):
        sample_training_mask(2, rng)


@pytest.mark.parametrize("name", sorted(GAP_PATTERNS))
@pytest.mark.parametrize("n", [5, 24, 64, 97])
def test_gap_patterns(name, n):
    rng = np.random.default_rng(1)
    mask = GAP_PATTERNS[name](n, rng)
    assert mask.shape == (n,) and mask.dtype == bool
    assert not mask[0], "the first slice is always acquired"
    assert mask.any()
    if name.startswith("x"):
        k = int(name[1:])
        assert np.flatnonzero(~mask).tolist() == list(range(0, n, k))
    elif name == "drop25":
        assert mask.sum() == int(round(0.25 * n))
    else:
        assert all(length == 3 for _, length in _runs(mask))
        if n >= 24:
            assert 0.15 <= mask.mean() <= 0.35
