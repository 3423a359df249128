"""Scores and tables: KnowGen (as the reference system computes it, and strict), WISE, paired comparison.

KnowGen, per group: the means of faithfulness, visual correctness and aesthetics over judged items, text
accuracy over the items where text applies (0.5 if none), then K = 0.1 f + 0.4 v + 0.4 t + 0.1 a; overall
is the mean of the two groups, a group without items counting 0 (as the reference's `overall_avg`); the
tables are on 0-100, `results_eval.json`'s summary rows on 0-1, both from the same unrounded means. The reference system leaves failed generations and
failed judgements out; the strict variant counts them as 0. Both are reported, with their counts.
Confidence intervals are percentile bootstraps (seeded, so a table is reproducible).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from statistics import fmean
from typing import Any

from pydantic import BaseModel

SCIENCE = ("astronomy", "biology", "chemistry", "physics", "engineering", "medicine", "industry", "architecture",
           "history", "geography", "religion", "politics", "culture", "art", "sports")
POP = ("anime", "game", "film", "celebrities", "posters", "multi-subject-anime", "multi-subject-celebrities",
       "multi-subject-game", "news")
GROUPS = {"science_and_knowledge": SCIENCE, "pop_culture_and_news": POP}
GROUP_OF = {category: group for group, categories in GROUPS.items() for category in categories}
DIMENSIONS = ("faithfulness", "visual_correctness", "text_accuracy", "aesthetics")
WISE_WEIGHTS = {
    "verified": {"culture": 0.40, "time": 0.12, "space": 0.12, "biology": 0.12, "physics": 0.12, "chemistry": 0.12},
    "legacy": {"culture": 0.4, "time": 0.167, "space": 0.133, "biology": 0.1, "physics": 0.1, "chemistry": 0.1},
}


class ItemResult(BaseModel):
    """One item's outcome, whatever stage it reached."""

    id: int | str
    category: str = ""
    difficulty: str = ""
    judged: bool = False
    scores: dict[str, float] = {}
    text_na: bool = False
    overall: float = 0.0  # per-item K, WiScore or 0/1
    failure: str | None = None  # "generation" or "judgement" when not judged


# -- KnowGen ------------------------------------------------------------------------------------------


def knowgen_means(items: Sequence[ItemResult], *, strict: bool, snap: bool = False) -> dict[str, float]:
    """Dimension means and K on 0-1, unrounded, for one set of items (a group, a category ...).

    The reference computation (`strict=False`): means over judged items, text accuracy over the judged
    items whose text applies (0.5 if none), K from the means. `strict=True` counts failed generations and
    judgements as 0. `snap=True` (strict only) reads every dimension snapped to {0, 0.5, 1} first.
    """
    if snap and not strict:
        raise ValueError("snapping is an option of the strict table only")
    pool = list(items) if strict else [item for item in items if item.judged]
    if not pool:
        return {**dict.fromkeys(DIMENSIONS, 0.0), "k_score": 0.0}

    def value(item: ItemResult, dimension: str) -> float:
        score = item.scores.get(dimension, 0.0) if item.judged else 0.0
        return min((0.0, 0.5, 1.0), key=lambda option: (abs(option - score), option)) if snap else score

    means = {d: fmean(value(item, d) for item in pool) for d in ("faithfulness", "visual_correctness", "aesthetics")}
    applicable = [item for item in pool if not (item.judged and item.text_na)]
    means["text_accuracy"] = fmean(value(item, "text_accuracy") for item in applicable) if applicable else 0.5
    k = 0.1 * means["faithfulness"] + 0.4 * means["visual_correctness"] + 0.4 * means["text_accuracy"] + 0.1 * means["aesthetics"]
    return {**{d: means[d] for d in DIMENSIONS}, "k_score": k}


def percent(value: float) -> float:
    """A 0-1 mean on the tables' 0-100 scale: rounded to 4 places first, as `results_eval.json`'s summary
    rows are, so that the two files show the same number (59.78 beside 0.5978, never 59.77)."""
    return round(100 * round(value, 4), 2)


def knowgen_aggregate(items: Sequence[ItemResult], *, strict: bool, snap: bool = False) -> dict[str, float]:
    """`knowgen_means` on 0-100 (the tables' scale)."""
    return {key: percent(value) for key, value in knowgen_means(items, strict=strict, snap=snap).items()}


def knowgen_overall_means(items: Sequence[ItemResult], *, strict: bool, snap: bool = False) -> dict[str, float]:
    """The overall row on 0-1: every key the mean of the two groups, a group without items counting 0
    (as the reference's `overall_avg` does)."""
    by_group = _by_group(items)
    per_group = [knowgen_means(members, strict=strict, snap=snap) for members in by_group.values()]
    return {key: fmean(group[key] for group in per_group) for key in (*DIMENSIONS, "k_score")}


def knowgen_overall(items: Sequence[ItemResult], *, strict: bool) -> float:
    """Overall K (0-100): the mean of the two groups' K, a group without items counting 0."""
    return percent(knowgen_overall_means(items, strict=strict)["k_score"])


def _by_group(items: Sequence[ItemResult]) -> dict[str, list[ItemResult]]:
    groups: dict[str, list[ItemResult]] = {group: [] for group in GROUPS}
    for item in items:
        group = GROUP_OF.get(item.category.lower())
        if group is not None:
            groups[group].append(item)
    return groups


def bootstrap_ci(items: Sequence[ItemResult], statistic: Callable[[Sequence[ItemResult]], float], *,
                 resamples: int = 1000, seed: int = 0, strata: Callable[[ItemResult], str] | None = None) -> list[float]:
    """95% percentile interval of `statistic`, resampling items with replacement (within strata if given)."""
    if not items or resamples <= 0:
        return [0.0, 0.0]
    rng = random.Random(seed)
    layers: dict[str, list[ItemResult]] = {}
    for item in items:
        layers.setdefault(strata(item) if strata else "", []).append(item)
    values = []
    for _ in range(resamples):
        sample = [pick for layer in layers.values() for pick in rng.choices(layer, k=len(layer))]
        values.append(statistic(sample))
    values.sort()
    return [round(values[int(0.025 * (len(values) - 1))], 2), round(values[int(0.975 * (len(values) - 1))], 2)]


def knowgen_tables(items: Sequence[ItemResult], *, resamples: int = 1000, seed: int = 0,
                   strict_snap: bool = False) -> dict[str, Any]:
    """Overall, per group, per category and per difficulty; reference and strict side by side, with CIs.

    The reference numbers are the reference evaluator's (and equal 100x the summary rows of
    `results_eval.json`); `strict_snap` snaps the strict table's scores to {0, 0.5, 1}.
    """
    known = [item for item in items if item.category.lower() in GROUP_OF]
    unknown = Counter(item.category or "(none)" for item in items if item.category.lower() not in GROUP_OF)

    def row(members: Sequence[ItemResult]) -> dict[str, Any]:
        return {"reference": knowgen_aggregate(members, strict=False),
                "strict": knowgen_aggregate(members, strict=True, snap=strict_snap),
                "ci95_reference_k": bootstrap_ci(members, lambda s: knowgen_aggregate(s, strict=False)["k_score"],
                                                 resamples=resamples, seed=seed),
                **_counts(members)}

    by_group = _by_group(known)
    overall = {
        "reference": {k: percent(v) for k, v in knowgen_overall_means(known, strict=False).items()},
        "strict": {k: percent(v) for k, v in knowgen_overall_means(known, strict=True, snap=strict_snap).items()},
        "ci95_reference_k": bootstrap_ci(known, lambda s: knowgen_overall(s, strict=False), resamples=resamples, seed=seed,
                                         strata=lambda item: GROUP_OF[item.category.lower()]),
        "strict_snapped": strict_snap,
        **_counts(known),
    }
    categories = sorted({item.category.lower() for item in known})
    difficulties = sorted({item.difficulty for item in known if item.difficulty})
    return {
        "overall": overall,
        "groups": {group: row(members) for group, members in by_group.items()},
        "categories": {c: row([i for i in known if i.category.lower() == c]) for c in categories},
        "difficulties": {d: row([i for i in known if i.difficulty == d]) for d in difficulties},
        "unknown_categories": dict(unknown),
    }


def _counts(items: Sequence[ItemResult]) -> dict[str, int]:
    failures = Counter(item.failure for item in items if not item.judged)
    return {"items": len(items), "judged": sum(1 for item in items if item.judged),
            "failed_generation": failures.get("generation", 0), "failed_judgement": failures.get("judgement", 0)}


# -- WISE ---------------------------------------------------------------------------------------------


def wise_area(category: str) -> str | None:
    name = category.lower()
    for key, needle in (("culture", "cultur"), ("time", "time"), ("space", "space"), ("biology", "bio"),
                        ("physics", "phys"), ("chemistry", "chem")):
        if needle in name:
            return key
    return None


def wise_tables(items: Sequence[ItemResult], version: str, *, resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    weights = WISE_WEIGHTS[version]
    known = [item for item in items if wise_area(item.category)]

    def mean(members: Sequence[ItemResult], strict: bool) -> float:
        pool = list(members) if strict else [m for m in members if m.judged]
        return round(fmean(m.overall if m.judged else 0.0 for m in pool), 4) if pool else 0.0

    def overall(members: Sequence[ItemResult], strict: bool) -> float:
        return round(sum(weight * mean([m for m in members if wise_area(m.category) == area], strict)
                         for area, weight in weights.items()), 4)

    areas = {area: {"reference": mean([m for m in known if wise_area(m.category) == area], False),
                    "strict": mean([m for m in known if wise_area(m.category) == area], True),
                    **_counts([m for m in known if wise_area(m.category) == area])} for area in weights}
    return {
        "version": version,
        "weights": weights,
        "overall": {"reference": overall(known, False), "strict": overall(known, True),
                    "ci95_reference": bootstrap_ci(known, lambda s: overall(s, False), resamples=resamples, seed=seed,
                                                   strata=lambda m: wise_area(m.category) or ""),
                    **_counts(known)},
        "areas": areas,
        "unknown_categories": dict(Counter(m.category or "(none)" for m in items if not wise_area(m.category))),
    }


# -- comparison ---------------------------------------------------------------------------------------


def compare(a: Sequence[ItemResult], b: Sequence[ItemResult], statistic: Callable[[Sequence[ItemResult]], float], *,
            resamples: int = 2000, seed: int = 0, flip_at: float = 0.5) -> dict[str, Any]:
    """Run B against run A on the items both have: per-item differences, flips, and a paired bootstrap of
    the difference in the overall statistic (B - A)."""
    by_id_a = {str(item.id): item for item in a}
    pairs = [(by_id_a[str(item.id)], item) for item in b if str(item.id) in by_id_a]
    if not pairs:
        return {"paired_items": 0}
    diffs = [(pb.overall if pb.judged else 0.0) - (pa.overall if pa.judged else 0.0) for pa, pb in pairs]
    improved = [str(pb.id) for pa, pb in pairs if _passes(pb, flip_at) and not _passes(pa, flip_at)]
    regressed = [str(pb.id) for pa, pb in pairs if _passes(pa, flip_at) and not _passes(pb, flip_at)]
    delta = statistic([pb for _, pb in pairs]) - statistic([pa for pa, _ in pairs])
    rng = random.Random(seed)
    samples = []
    for _ in range(resamples):
        chosen = rng.choices(pairs, k=len(pairs))
        samples.append(statistic([pb for _, pb in chosen]) - statistic([pa for pa, _ in chosen]))
    samples.sort()
    low, high = samples[int(0.025 * (resamples - 1))], samples[int(0.975 * (resamples - 1))]
    below = sum(1 for value in samples if value <= 0) / resamples
    return {
        "paired_items": len(pairs),
        "only_in_a": len(by_id_a) - len(pairs),
        "only_in_b": len(b) - len(pairs),
        "overall_a": round(statistic([pa for pa, _ in pairs]), 2),
        "overall_b": round(statistic([pb for _, pb in pairs]), 2),
        "delta": round(delta, 2),
        "ci95_delta": [round(low, 2), round(high, 2)],
        "p_value_two_sided": round(min(1.0, 2 * min(below, 1 - below)), 4),
        "significant": low > 0 or high < 0,
        "mean_item_difference": round(fmean(diffs), 4),
        "improved": improved,
        "regressed": regressed,
    }


def _passes(item: ItemResult, threshold: float) -> bool:
    return item.judged and item.overall >= threshold
