"""sketchgen.data on the local mirror: categories, resolving sources, loaders, cache, splits."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from rasterize.ndjson_reader import NdjsonError
from sketchgen.data import datasets, sources


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A cache dir of this test's own, so cache hits and misses are this test's doing."""
    path = tmp_path / "cache"
    monkeypatch.setenv("SKETCHGEN_CACHE", str(path))
    return path


def first_lines(path: Path, n: int) -> list[dict]:
    with open(path, "rb") as stream:
        return [json.loads(next(stream)) for _ in range(n)]


# -- categories and sources -----------------------------------------------------------------


def test_categories_are_googles_list(mirror):
    googles = tuple((mirror / "categories.txt").read_text().split("\n"))
    assert sources.CATEGORIES == tuple(name for name in googles if name)
    assert len(sources.CATEGORIES) == 345 and "The Eiffel Tower" in sources.CATEGORIES


@pytest.mark.parametrize(
    ("name", "suggestion"), [("catt", "'cat'"), ("Coffee Cup", "'coffee cup'"), ("../cat", "'cat'")]
)
def test_check_category_suggests_close_names(name, suggestion):
    with pytest.raises(ValueError, match=f"unknown category.*did you mean {suggestion}"):
        sources.check_category(name)
    assert sources.check_category("coffee cup") == "coffee cup"


def test_category_resolves_to_the_mirror_file_in_place(mirror, cache):
    assert sources.resolve("coffee cup", "raw") == mirror / "full/raw/coffee cup.ndjson"
    assert sources.resolve("apple", "bitmap") == mirror / "full/numpy_bitmap/apple.npy"
    assert sources.resolve("alarm clock", "sketchrnn") == mirror / "sketchrnn/alarm clock.npz"
    assert sources.resolve("cat", mirror=str(mirror)) == mirror / "full/simplified/cat.ndjson"
    assert not cache.exists(), "a mirror folder must be read in place, not copied"


def test_paths_pass_through(mirror):
    sun = mirror / "extra/culture/sun.ndjson"
    assert sources.resolve(sun) == sun
    assert sources.resolve(str(sun), fmt="bitmap") == sun  # fmt applies to categories only
    face = mirror / "sketchrnn/face.npz"
    assert sources.resolve(face) == face


@pytest.mark.parametrize(
    "source", ["../../etc/passwd", "cat/../../x", "notes.txt", "missing.ndjson", "", "cats"]
)
def test_bad_sources_say_what_was_expected(source, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("not data")
    with pytest.raises(ValueError, match="expected one of Google's 345 category names or a path"):
        sources.resolve(source)


def test_bad_format_and_mirror_are_value_errors():
    with pytest.raises(ValueError, match="format must be one of"):
        sources.resolve("cat", fmt="png")
    for malformed in ("ftp://example.org/quickdraw", "file:///srv/quickdraw"):
        with pytest.raises(ValueError, match="local folder or an http"):
            sources.resolve("cat", mirror=malformed)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:port/", "https:///quickdraw/", "http://[::1/", "http://h:99999/"])
def test_a_malformed_mirror_url_is_refused_before_any_request(url, monkeypatch):
    with pytest.raises(ValueError, match=rf"^mirror {re.escape(repr(url))}: .*host"):
        sources.resolve_mirror(url)
    monkeypatch.setenv("QUICKDRAW_MIRROR", url)
    with pytest.raises(ValueError, match=r"^QUICKDRAW_MIRROR "):
        sources.resolve("cat")


def test_a_missing_mirror_folder_means_googles_bucket(tmp_path, monkeypatch, capsys):
    # Checked on resolve_mirror's answer alone: nothing here may reach the internet.
    absent = tmp_path / "absent"
    monkeypatch.setenv("QUICKDRAW_MIRROR", str(absent))
    for _ in range(2):
        assert sources.resolve_mirror(None) == sources.GOOGLE_BUCKET
    assert sources.resolve_mirror(absent) == sources.GOOGLE_BUCKET
    (tmp_path / "a file").write_text("not a folder")
    assert sources.resolve_mirror(tmp_path / "a file") == sources.GOOGLE_BUCKET
    assert capsys.readouterr().err.splitlines() == [
        f"sketchgen: QUICKDRAW_MIRROR={absent} is not a folder; reading Google's bucket "
        f"{sources.GOOGLE_BUCKET} instead",
        f"sketchgen: mirror={absent} is not a folder; reading Google's bucket "
        f"{sources.GOOGLE_BUCKET} instead",
        f"sketchgen: mirror={tmp_path / 'a file'} is not a folder; reading Google's bucket "
        f"{sources.GOOGLE_BUCKET} instead",
    ], "one line per setting, once"


def test_category_missing_from_the_mirror_names_the_mirror(mirror):
    with pytest.raises(FileNotFoundError, match="has no bitmap file for 'dog'"):
        sources.resolve("dog", "bitmap")


@pytest.mark.parametrize(
    "parts", [("..", "x"), ("a/../../b",), ("/etc/passwd",), ("full", "..", "..", "x")]
)
def test_safe_join_rejects_escapes(tmp_path, parts):
    with pytest.raises(ValueError, match="would escape"):
        sources.safe_join(tmp_path, *parts)


def test_a_mirror_folder_of_symlinks_is_read_through_them(mirror, tmp_path):
    links = tmp_path / "links" / "full" / "simplified"
    links.mkdir(parents=True)
    (links / "cat.ndjson").symlink_to(mirror / "full/simplified/cat.ndjson")
    path = sources.resolve("cat", mirror=tmp_path / "links")
    assert path == links / "cat.ndjson"
    assert datasets.load_drawings([path], per_class=2).drawings[0].key_id is not None


# -- load_drawings --------------------------------------------------------------------------


def test_load_drawings_takes_the_first_records_in_file_order(mirror):
    loaded = datasets.load_drawings(["cat", "The Eiffel Tower"], per_class=10)
    assert loaded.class_names == ["cat", "The Eiffel Tower"]
    assert loaded.labels.dtype == np.int64
    assert loaded.labels.tolist() == [0] * 10 + [1] * 10
    expected = [
        line["key_id"]
        for name in loaded.class_names
        for line in first_lines(mirror / f"full/simplified/{name}.ndjson", 10)
    ]
    assert [d.key_id for d in loaded.drawings] == expected
    assert len(loaded.skipped) == 0


def test_gzipped_ndjson_is_a_source_named_after_its_stem(mirror, tmp_path):
    plain = mirror / "full/simplified/cat.ndjson"
    packed = tmp_path / "my cats.ndjson.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    loaded = datasets.load_drawings([packed], per_class=5)
    assert loaded.class_names == ["my cats"]
    assert [d.key_id for d in loaded.drawings] == [r["key_id"] for r in first_lines(plain, 5)]


def test_load_drawings_raw_keeps_times():
    loaded = datasets.load_drawings("cat", fmt="raw", per_class=3)
    assert len(loaded) == 3 and all(d.times is not None for d in loaded.drawings)


def test_category_and_file_of_the_same_name_share_a_class(mirror):
    # The simplified "sun" file holds 25 drawings: per_class 30 tops it up from the file.
    culture = mirror / "extra/culture/sun.ndjson"
    loaded = datasets.load_drawings(["sun", culture, "cat"], per_class=30)
    assert loaded.class_names == ["sun", "cat"]
    assert loaded.labels.tolist() == [0] * 30 + [1] * 25
    topped_up = loaded.drawings[25:30]
    assert [d.countrycode for d in topped_up] == [r["countrycode"] for r in first_lines(culture, 5)]
    assert all(d.key_id is None for d in topped_up)


def write_with_bad_line(mirror: Path, path: Path) -> Path:
    good = (mirror / "full/simplified/cat.ndjson").read_bytes().splitlines(keepends=True)[:3]
    path.write_bytes(good[0] + b'{"word": "cat"}\n' + good[1] + good[2])
    return path


def test_on_error_raise_names_file_and_line_and_skip_counts(mirror, tmp_path):
    bad = write_with_bad_line(mirror, tmp_path / "bad.ndjson")
    with pytest.raises(NdjsonError, match=r"bad\.ndjson:2: record has no 'drawing' key"):
        datasets.load_drawings([bad])
    loaded = datasets.load_drawings([bad], on_error="skip")
    assert len(loaded) == 3 and loaded.class_names == ["bad"]
    assert dict(loaded.skipped.counts) == {"missing-drawing": 1}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sources": ["cat", "cat"]}, "listed more than once"),
        ({"sources": []}, "no data sources"),
        ({"sources": ["cat"], "per_class": 0}, "per_class must be a positive integer"),
        ({"sources": ["cat"], "per_class": 2.5}, "per_class must be a positive integer"),
        ({"sources": ["cat"], "per_class": "5"}, "per_class must be a positive integer"),
        ({"sources": ["cat"], "fmt": "bitmap"}, "format must be one of"),
        ({"sources": ["cat"], "on_error": "ignore"}, "on_error must be one of"),
        ({"sources": ["cat", "catt"]}, "did you mean 'cat'"),
    ],
)
def test_load_drawings_rejects_bad_requests(kwargs, message):
    with pytest.raises(ValueError, match=message):
        datasets.load_drawings(**kwargs)


def test_load_drawings_rejects_non_stroke_files(mirror):
    expected = r"apple\.npy': expected a \.ndjson or \.ndjson\.gz or \.npz"
    with pytest.raises(ValueError, match=expected):
        datasets.load_drawings(["cat", mirror / "full/numpy_bitmap/apple.npy"])


# -- load_bitmaps ---------------------------------------------------------------------------


def test_rendered_bitmaps_equal_googles_numpy_bitmap(mirror, cache):
    rendered = datasets.load_bitmaps(["apple", "cat"], per_class=25)
    google = datasets.load_bitmaps(["apple", "cat"], per_class=25, fmt="bitmap")
    assert rendered.bitmaps.dtype == np.uint8 and rendered.bitmaps.shape == (50, 28, 28)
    assert rendered.class_names == google.class_names == ["apple", "cat"]
    assert rendered.labels.tolist() == google.labels.tolist() == [0] * 25 + [1] * 25
    np.testing.assert_array_equal(rendered.bitmaps, google.bitmaps)
    on_disk = np.load(mirror / "full/numpy_bitmap/cat.npy")[:25].reshape(-1, 28, 28)
    np.testing.assert_array_equal(google.bitmaps[25:], on_disk)


@pytest.fixture
def render_calls(monkeypatch) -> list[int]:
    """Counts the drawings each real render call receives (validation calls render nothing)."""
    calls: list[int] = []
    real = datasets.render

    def counting(drawings, **settings):
        calls.append(len(drawings))
        return real(drawings, **settings)

    monkeypatch.setattr(datasets, "render", counting)
    return calls


def cached_files(cache: Path) -> list[Path]:
    return sorted((cache / "bitmaps").iterdir())


def test_bitmaps_are_rendered_once_then_read_from_the_cache(mirror, cache, tmp_path, render_calls):
    source = tmp_path / "cat.ndjson"
    shutil.copy(mirror / "full/simplified/cat.ndjson", source)
    first = datasets.load_bitmaps([source], per_class=20)
    assert sum(render_calls) == 20 and len(cached_files(cache)) == 1

    again = datasets.load_bitmaps([source], per_class=20)
    assert sum(render_calls) == 20, "the second call must read the cache, not render"
    np.testing.assert_array_equal(again.bitmaps, first.bitmaps)

    # Every setting that changes the pixels, and the file itself, changes the key.
    datasets.load_bitmaps([source], per_class=20, line_width=12.0)
    datasets.load_bitmaps([source], per_class=20, padding=8.0)
    datasets.load_bitmaps([source], per_class=20, invert=True)
    bigger = datasets.load_bitmaps([source], per_class=20, size=32)
    datasets.load_bitmaps([source], per_class=10)
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    datasets.load_bitmaps([source], per_class=20)
    assert sum(render_calls) == 20 * 6 + 10
    assert bigger.bitmaps.shape == (20, 32, 32)
    files = cached_files(cache)
    assert len(files) == 7 and all(f.suffix == ".npz" for f in files), "no temporary files left"


def test_cached_bitmaps_keep_the_skip_counts(mirror, cache, tmp_path, render_calls):
    bad = write_with_bad_line(mirror, tmp_path / "bad.ndjson")
    for _ in range(2):
        loaded = datasets.load_bitmaps([bad], on_error="skip")
        assert len(loaded) == 3 and dict(loaded.skipped.counts) == {"missing-drawing": 1}
        assert loaded.skipped.examples == [f"{bad}:2: record has no 'drawing' key"]
    assert sum(render_calls) == 3


def test_npy_rows_are_used_as_they_are(mirror, cache):
    npy = mirror / "full/numpy_bitmap/fish.npy"
    loaded = datasets.load_bitmaps([npy, "apple"], per_class=5)
    assert loaded.class_names == ["fish", "apple"]
    np.testing.assert_array_equal(loaded.bitmaps[:5], np.load(npy)[:5].reshape(-1, 28, 28))
    assert len(cached_files(cache)) == 1, (
        "only apple was rendered: ready-made bitmaps need no cache"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sources": ["apple"], "fmt": "bitmap", "size": 64}, "numpy_bitmap files are 28 px"),
        ({"sources": ["apple"], "fmt": "bitmap", "invert": True}, "used as they are"),
        ({"sources": ["apple"], "fmt": "sketchrnn"}, "format must be one of"),
        ({"sources": ["apple"], "size": 0}, "size must be a positive integer"),
        ({"sources": ["apple"], "line_width": -1.0}, "line_width must be finite and positive"),
    ],
)
def test_load_bitmaps_rejects_bad_requests_before_reading(kwargs, message, render_calls):
    with pytest.raises(ValueError, match=message):
        datasets.load_bitmaps(**kwargs)
    assert sum(render_calls) == 0


@pytest.mark.parametrize(
    "damage",
    [
        lambda npy: npy[: 128 + 10 * 784],  # the header announces 3,000 rows
        lambda npy: npy.replace(b"(3000, 784), }", b"((3000, 784), ", 1),  # cannot tokenize
        lambda npy: npy.replace(b"(3000, 784)", b"(-300, 784)", 1),
        lambda npy: b"no .npy file at all\n",
    ],
    ids=["truncated", "unparsable", "negative", "not npy"],
)
def test_a_bad_npy_file_is_one_line_naming_it(mirror, tmp_path, damage):
    bad = tmp_path / "bad.npy"
    bad.write_bytes(damage((mirror / "full/numpy_bitmap/eye.npy").read_bytes()))
    with pytest.raises(ValueError) as error:
        datasets.load_bitmaps(bad)
    assert str(error.value).startswith(f"{bad}: not a valid .npy file of bitmaps")
    assert "\n" not in str(error.value)


def test_npy_of_another_size_is_refused(mirror):
    with pytest.raises(
        ValueError, match=r"holds uint8 \(784,\) rows, expected uint8 bitmaps of 64x64"
    ):
        datasets.load_bitmaps([mirror / "full/numpy_bitmap/eye.npy"], size=64)


# -- splits ---------------------------------------------------------------------------------


def test_split_is_deterministic_disjoint_and_complete():
    train, valid, test = datasets.split_indices(1000, seed=7)
    assert (len(train), len(valid), len(test)) == (800, 100, 100)
    together = np.concatenate([train, valid, test])
    assert np.array_equal(np.sort(together), np.arange(1000)), "disjoint and covering"
    again = datasets.split_indices(1000, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip((train, valid, test), again, strict=True))
    other = datasets.split_indices(1000, seed=8)
    assert not np.array_equal(other[2], test)
    assert all(np.all(np.diff(part) > 0) for part in (train, valid, test)), "sorted"


def test_split_sizes_add_up_for_any_n():
    for n in (0, 1, 7, 33):
        parts = datasets.split_indices(n, seed=0, fractions=(0.5, 0.25, 0.25))
        assert sum(len(p) for p in parts) == n
        assert len(np.unique(np.concatenate(parts))) == n


@pytest.mark.parametrize("fractions", [(0.8, 0.1), (0.9, 0.2, -0.1), (), (float("nan"), 1.0)])
def test_split_rejects_bad_fractions(fractions):
    with pytest.raises(ValueError, match="fractions must"):
        datasets.split_indices(10, seed=0, fractions=fractions)


def test_split_needs_a_seed():
    with pytest.raises(ValueError, match="seed must be an integer"):
        datasets.split_indices(10, seed=None)


def test_sketchrnn_npz_loads_as_drawings_by_category_and_by_path(mirror):
    from rasterize.sketch_npz import read_sketch_npz
    from rasterize.strokes import drawing_to_stroke3

    path = mirror / "sketchrnn" / "face.npz"
    by_category = datasets.load_drawings(["face"], fmt="sketchrnn", per_class=30)
    by_path = datasets.load_drawings([path, "pig"], fmt="sketchrnn", per_class=20)
    assert len(by_category) == 30 and by_category.class_names == ["face"]
    assert by_path.class_names == ["face", "pig"]
    assert by_path.labels.tolist() == [0] * 20 + [1] * 20
    originals = read_sketch_npz(path)["sketches"][:20]
    for drawing, sketch in zip(by_path.drawings[:20], originals, strict=True):
        # the absolute-point drawing gives back the file's stroke-3 offsets exactly
        np.testing.assert_array_equal(drawing_to_stroke3(drawing), sketch)
