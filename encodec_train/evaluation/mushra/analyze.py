"""MUSHRA results: the paper's annotator filtering, then mean scores with 95% confidence
intervals per system, as a table and a plot.

The paper (§4.2) drops "annotators who rate the reference below 90 in at least 20% of the
cases, or rate the low anchor above 80 in more than 50% of the cases". Results are read from
webMUSHRA's `mushra.csv` (one row per rating: `session_uuid`, `trial_id`,
`rating_stimulus`, `rating_score`, ...).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from encodec_train.evaluation.mushra import ANCHOR, REFERENCE

COLUMNS = ("annotator", "trial", "stimulus", "score")


@dataclass(frozen=True)
class Filtering:
    """The paper's thresholds: drop an annotator who rates the reference below
    `reference_below` in at least `reference_share` of the trials, or the anchor above
    `anchor_above` in more than `anchor_share` of them."""

    reference_below: float = 90.0
    reference_share: float = 0.2
    anchor_above: float = 80.0
    anchor_share: float = 0.5


@dataclass(frozen=True)
class SystemScore:
    """Mean score of a system over the kept ratings, its 95% confidence interval (Student's
    t, half-width) and the number of ratings."""

    system: str
    mean: float
    ci95: float
    ratings: int


def read_ratings(
    path: str | Path,
    annotator: str = "session_uuid",
    trial: str = "trial_id",
    stimulus: str = "rating_stimulus",
    score: str = "rating_score",
) -> list[tuple[str, str, str, float]]:
    """(annotator, trial, stimulus, score) rows of a results CSV, by its column names."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        wanted = (annotator, trial, stimulus, score)
        missing = [c for c in wanted if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; found {reader.fieldnames}")
        return [
            (row[annotator], row[trial], row[stimulus], float(row[score]))
            for row in reader
            if row[score] != ""
        ]


def dropped_annotators(
    ratings: list[tuple[str, str, str, float]], rules: Filtering = Filtering()
) -> dict[str, str]:
    """Annotators to drop under `rules`, each with the reason."""
    reference: dict[str, list[float]] = defaultdict(list)
    anchor: dict[str, list[float]] = defaultdict(list)
    for who, _, stimulus, value in ratings:
        if stimulus == REFERENCE:
            reference[who].append(value)
        elif stimulus == ANCHOR:
            anchor[who].append(value)
    dropped = {}
    for who in dict.fromkeys(r[0] for r in ratings):
        low = np.mean(np.array(reference[who]) < rules.reference_below) if reference[who] else 0
        high = np.mean(np.array(anchor[who]) > rules.anchor_above) if anchor[who] else 0
        if low >= rules.reference_share:
            dropped[who] = (
                f"rated the reference below {rules.reference_below:g} in {low:.0%} of trials"
            )
        elif high > rules.anchor_share:
            dropped[who] = f"rated the anchor above {rules.anchor_above:g} in {high:.0%} of trials"
    return dropped


def system_scores(ratings: list[tuple[str, str, str, float]]) -> list[SystemScore]:
    """Mean and 95% confidence half-width per stimulus, best first."""
    by_system: dict[str, list[float]] = defaultdict(list)
    for _, _, stimulus, value in ratings:
        by_system[stimulus].append(value)
    scores = []
    for system, values in by_system.items():
        values_array = np.array(values)
        n = len(values_array)
        half = (
            float(stats.t.ppf(0.975, n - 1) * values_array.std(ddof=1) / np.sqrt(n))
            if n > 1
            else float("nan")
        )
        scores.append(SystemScore(system, float(values_array.mean()), half, n))
    return sorted(scores, key=lambda s: -s.mean)


def plot_scores(scores: list[SystemScore], path: Path) -> Path:
    """Bars of the mean scores with their 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(1.2 * len(scores) + 2, 4))
    names = [s.system for s in scores]
    axes.bar(names, [s.mean for s in scores], yerr=[s.ci95 for s in scores], capsize=4)
    axes.set_ylim(0, 100)
    axes.set_ylabel("MUSHRA score (mean, 95% CI)")
    axes.tick_params(axis="x", rotation=30)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def analyze(
    path: str | Path, out_dir: str | Path, rules: Filtering = Filtering(), **columns: str
) -> str:
    """Filter the annotators of a results CSV, score the systems, write `mushra_scores.csv`
    and `mushra_scores.png` under `out_dir`; return the Markdown summary."""
    ratings = read_ratings(path, **columns)
    dropped = dropped_annotators(ratings, rules)
    kept = [r for r in ratings if r[0] not in dropped]
    scores = system_scores(kept)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "mushra_scores.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["system", "mean", "ci95", "ratings"])
        writer.writerows([s.system, s.mean, s.ci95, s.ratings] for s in scores)
    plot_scores(scores, out / "mushra_scores.png")
    annotators = len({r[0] for r in ratings})
    lines = [
        f"Annotators: {annotators}, kept {annotators - len(dropped)}.",
        *[f"- dropped {who}: {why}" for who, why in dropped.items()],
        "",
        "| system | mean | 95% CI | ratings |",
        "| --- | --- | --- | --- |",
        *[f"| {s.system} | {s.mean:.1f} | ±{s.ci95:.1f} | {s.ratings} |" for s in scores],
    ]
    return "\n".join(lines) + "\n"
