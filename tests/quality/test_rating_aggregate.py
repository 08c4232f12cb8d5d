"""Aggregation of human ratings: per-pair majority, win rate, intervals, mean scores."""

from __future__ import annotations

import numpy as np
import pytest

from quality.rating.aggregate import Vote, aggregate, cluster_bootstrap, format_report, majority, wilson_interval

DIMS = ("motion_dynamics", "overall")


def _vote(case: str, rater: str, pref: str, a: int = 3, b: int = 3) -> Vote:
    return Vote(case, rater, pref, {("a", d): a for d in DIMS} | {("b", d): b for d in DIMS})


@pytest.mark.parametrize("prefs, expected", [
    (["G"], "G"), (["G", "G", "B"], "G"), (["B", "S", "B"], "B"), (["S"], "S"),
    (["G", "B"], "S"),            # even split: nobody showed a difference
    (["G", "S"], "S"),            # tie for the most votes is Same
    (["G", "G", "B", "B", "S"], "S"),
    (["G", "G", "S", "B"], "G"),  # plurality, not absolute majority
])
def test_majority_over_raters(prefs: list[str], expected: str) -> None:
    assert majority(prefs) == expected


def test_majority_refuses_empty_or_unknown_votes() -> None:
    with pytest.raises(ValueError, match="at least one vote"):
        majority([])
    with pytest.raises(ValueError, match="G, S or B"):
        majority(["G", "left"])


@pytest.mark.parametrize("k, n, low, high", [
    (0, 10, 0.0, 0.2775), (5, 10, 0.2366, 0.7634), (10, 10, 0.7225, 1.0), (1, 1, 0.2065, 1.0), (81, 263, 0.2553, 0.3662),
])
def test_wilson_interval_matches_reference_values(k: int, n: int, low: float, high: float) -> None:
    got = wilson_interval(k, n)
    assert got == pytest.approx((low, high), abs=5e-4)
    assert got[0] <= k / n <= got[1]


def test_wilson_interval_refuses_impossible_counts() -> None:
    for k, n in ((1, 0), (-1, 3), (4, 3)):
        with pytest.raises(ValueError):
            wilson_interval(k, n)


def test_cluster_bootstrap_is_deterministic_and_brackets_the_mean() -> None:
    sums, counts = np.array([3.0, 10.0, 4.0, 9.0]), np.array([1.0, 2.0, 1.0, 3.0])
    first = cluster_bootstrap(sums, counts, seed=3)
    assert first == cluster_bootstrap(sums, counts, seed=3)
    assert first.value == pytest.approx(26.0 / 7.0) and first.n == 7
    assert first.low < first.value < first.high
    assert 1.0 <= first.low and first.high <= 5.0


def test_cluster_bootstrap_of_one_cluster_is_the_point() -> None:
    got = cluster_bootstrap(np.array([8.0]), np.array([2.0]))
    assert (got.value, got.low, got.high, got.n) == (4.0, 4.0, 4.0, 2)
    with pytest.raises(ValueError):
        cluster_bootstrap(np.array([]), np.array([]))


def test_bootstrap_interval_covers_the_true_win_rate() -> None:
    """About 95% of intervals from independent 60-pair studies contain the true rate."""
    rng, true_rate, hits, trials = np.random.default_rng(7), 0.7, 0, 150
    for i in range(trials):
        values = (rng.random(60) < true_rate).astype(np.float64)
        interval = cluster_bootstrap(values, np.ones_like(values), resamples=400, seed=i)
        hits += interval.low <= true_rate <= interval.high
    assert 0.88 <= hits / trials <= 0.99


def test_aggregate_counts_pairs_not_votes() -> None:
    votes = [
        _vote("c1", "ann", "G", a=5, b=2), _vote("c1", "bob", "G", a=4, b=2), _vote("c1", "cy", "B", a=2, b=4),
        _vote("c2", "ann", "B", a=1, b=5),
        _vote("c3", "ann", "S", a=3, b=3), _vote("c3", "bob", "G", a=4, b=3),  # tie -> S
        _vote("c4", "bob", "G", a=5, b=1),
    ]
    report = aggregate(votes, DIMS, resamples=500)
    assert [(p.case_id, p.verdict) for p in report.pairs] == [("c1", "G"), ("c2", "B"), ("c3", "S"), ("c4", "G")]
    assert report.pairs[0].counts == {"G": 2, "S": 0, "B": 1}
    assert report.verdicts == {"G": 2, "S": 1, "B": 1}
    assert report.win_rate.value == pytest.approx((2 + 0.5) / 4) and report.win_rate.n == 4
    assert report.gsb.value == pytest.approx((2 - 1) / 4)
    assert report.win_rate.low <= report.win_rate.value <= report.win_rate.high
    assert report.decisive_share is not None and report.decisive_share.value == pytest.approx(2 / 3)
    assert report.decisive_share.n == 3
    assert report.agreement == pytest.approx(5 / 7)  # c1: 2 of 3, c2: 1, c3: 1 (the S) of 2, c4: 1
    assert (report.n_votes, report.n_raters) == (7, 3)
    a_overall = report.ratings["a"]["overall"]
    assert a_overall.value == pytest.approx((5 + 4 + 2 + 1 + 3 + 4 + 5) / 7) and a_overall.n == 7
    assert a_overall.low < a_overall.value < a_overall.high
    assert report.ratings["b"]["motion_dynamics"].value == pytest.approx((2 + 2 + 4 + 5 + 3 + 3 + 1) / 7)


def test_aggregate_without_decisive_pairs_or_votes() -> None:
    report = aggregate([_vote("c1", "ann", "S")], DIMS)
    assert report.decisive_share is None and report.win_rate.value == 0.5 and report.gsb.value == 0.0
    with pytest.raises(ValueError, match="no submitted votes"):
        aggregate([], DIMS)


def test_format_report_names_systems_and_dimensions() -> None:
    report = aggregate([_vote("c1", "ann", "G", a=5, b=2), _vote("c2", "bob", "B")], DIMS, resamples=200)
    text = format_report(report, system_a="lpm-online/3", system_b="lpm-online/2",
                         dimensions={"motion_dynamics": "Motion dynamics", "overall": "Overall"}, show_pairs=True)
    assert "A = lpm-online/3" in text and "B = lpm-online/2" in text
    assert "win rate A over B, (G + S/2)/N   0.500" in text
    assert "Motion dynamics" in text and "c1" in text and "c2" in text
    assert report.to_json()["win_rate"]["value"] == 0.5
