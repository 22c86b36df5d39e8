"""The README's results block is generated from the stored references (course_lib.report) and must match them."""

from course_lib import report


def test_readme_results_block_matches_the_stored_references():
    assert report.sync_readme(), ("README.md's results block differs from data/reference/: run "
                                  "`python -m course_lib report --write`")


def test_the_block_shows_every_reference_and_every_claim():
    block = report.results_block()
    for title in report.REFERENCES.values():
        assert title in block
    assert "| # | the paper says |" in block and block.startswith(report.START) and block.endswith(report.END)
