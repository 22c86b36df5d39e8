"""The README's main-result figure is what the stored reference data gives (course_lib.figures)."""

from __future__ import annotations

import numpy as np

from course_lib import figures


def _summary() -> dict:
    return figures.load_summary()


def test_readme_shows_the_committed_figure():
    readme = (figures.ROOT / "README.md").read_text()
    assert f"]({figures.README_FIGURE.relative_to(figures.ROOT).as_posix()})" in readme


def test_figure_is_small_and_names_its_source():
    assert figures.README_FIGURE.stat().st_size < 150_000
    meta = figures.png_metadata(figures.README_FIGURE)
    assert meta["Source"] == "data/reference/cifar10_cpu/"
    assert "Software" not in meta  # no library version in the file: the bytes change only with the picture


def test_figure_was_drawn_from_the_stored_summary():
    stored = figures.png_metadata(figures.README_FIGURE)["summary-sha256"]
    assert stored == figures.summary_sha256(_summary()), "stale figure: run `python -m course_lib figures --write`"


def test_summary_hash_sees_a_changed_number_but_not_key_order():
    summary = _summary()
    reordered = dict(reversed(list(_summary().items())))
    assert list(reordered) != list(summary)
    assert figures.summary_sha256(reordered) == figures.summary_sha256(summary)
    summary["curves"]["channel"][0]["accuracy"] += 1e-4
    assert figures.summary_sha256(summary) != figures.summary_sha256(reordered)


def test_a_fresh_drawing_has_the_committed_pixels():
    fresh = figures.pixels(figures.render_png(_summary(), "data/reference/cifar10_cpu/"))
    committed = figures.pixels(figures.README_FIGURE)
    assert fresh.shape == committed.shape
    assert np.array_equal(fresh, committed), "the plot code changed: run `python -m course_lib figures --write`"


def test_a_different_summary_draws_different_pixels():
    # The pixel comparison above can fail: moving one point of one curve changes the picture.
    summary = _summary()
    summary["curves"]["layer"][0]["accuracy"] -= 0.05
    assert not np.array_equal(figures.pixels(figures.render_png(summary, "data/reference/cifar10_cpu/")),
                              figures.pixels(figures.README_FIGURE))


def test_check_command_passes_on_the_committed_figure(capsys):
    assert figures.main(["--check"]) == 0
    assert "matches" in capsys.readouterr().out
