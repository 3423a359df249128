"""Aggregation formulas against small cases computed by hand, and the judge's answer parsing."""

import pytest

from gensearcher.evaluate import ItemResult, compare, knowgen_tables, wise_tables
from gensearcher.evaluate.runner import reference_summary_rows
from gensearcher.evaluate.scores import knowgen_aggregate, knowgen_overall
from gensearcher.judge import parse_judgement
from gensearcher.judge.judge import snap


def judged(id, category, f, v, t, a, *, na=False, difficulty="easy"):
    overall = 0.1 * f + 0.4 * v + 0.4 * (0.5 if na else t) + 0.1 * a
    return ItemResult(id=id, category=category, difficulty=difficulty, judged=True, text_na=na, overall=overall,
                      scores={"faithfulness": f, "visual_correctness": v, "text_accuracy": 0.5 if na else t, "aesthetics": a})


def failed(id, category, why="generation"):
    return ItemResult(id=id, category=category, judged=False, failure=why)


ITEMS = [
    judged(1, "sports", 1, 1, 1, 0.5),
    judged(2, "Sports", 1, 0.5, 0, 0.5, na=True),   # text N/A: left out of the text mean
    judged(3, "history", 0.5, 0, 0.5, 0),
    failed(4, "history"),
    judged(5, "film", 1, 0.5, 1, 1),
    judged(6, "anime", 0, 0, 0, 0.5, na=True),       # the only text N/A in its group: text mean over item 5 only
    failed(7, "news", "judgement"),
    judged(8, "cooking", 1, 1, 1, 1),                 # unknown category
]


def test_reference_group_scores_by_hand():
    science = [i for i in ITEMS if i.category.lower() in ("sports", "history")]
    # judged: 1, 2, 3. f = (1+1+0.5)/3, v = (1+0.5+0)/3, a = (0.5+0.5+0)/3, text over 1 and 3 = (1+0.5)/2
    f, v, t, a = 2.5 / 3, 1.5 / 3, 0.75, 1 / 3
    expected = round(100 * (0.1 * f + 0.4 * v + 0.4 * t + 0.1 * a), 2)
    result = knowgen_aggregate(science, strict=False)
    assert result["k_score"] == expected == 61.67
    assert result["text_accuracy"] == 75.0 and result["faithfulness"] == round(100 * f, 2)


def test_strict_counts_failures_as_zero():
    science = [i for i in ITEMS if i.category.lower() in ("sports", "history")]
    # four items, item 4 is 0 everywhere and counts as text-applicable: text over 1, 3, 4 = 1.5/3
    f, v, t, a = 2.5 / 4, 1.5 / 4, 0.5, 1 / 4
    assert knowgen_aggregate(science, strict=True)["k_score"] == round(100 * (0.1 * f + 0.4 * v + 0.4 * t + 0.1 * a), 2)


def test_text_mean_is_half_when_nothing_applies():
    only_na = [judged(1, "anime", 1, 1, 0, 1, na=True)]
    assert knowgen_aggregate(only_na, strict=False)["text_accuracy"] == 50.0


def test_overall_is_the_mean_of_the_groups_and_unknowns_are_listed():
    tables = knowgen_tables(ITEMS, resamples=200)
    science = tables["groups"]["science_and_knowledge"]["reference"]["k_score"]
    pop = tables["groups"]["pop_culture_and_news"]["reference"]["k_score"]
    # from the unrounded group values, so within a rounding step of the mean of the rounded ones
    assert abs(tables["overall"]["reference"]["k_score"] - (science + pop) / 2) <= 0.01
    assert knowgen_overall(ITEMS, strict=False) == tables["overall"]["reference"]["k_score"]
    assert tables["unknown_categories"] == {"cooking": 1}
    assert tables["overall"]["items"] == 7 and tables["overall"]["failed_generation"] == 1
    assert tables["overall"]["failed_judgement"] == 1
    assert set(tables["categories"]) == {"sports", "history", "film", "anime", "news"}
    low, high = tables["overall"]["ci95_reference_k"]
    assert low <= tables["overall"]["reference"]["k_score"] <= high
    assert knowgen_tables(ITEMS, resamples=200) == tables  # seeded: reproducible


def test_reference_summary_rows_match_the_reference_format():
    rows = reference_summary_rows(ITEMS)
    assert [r.summary_type for r in rows] == ["science_and_knowledge", "pop_culture_and_news", "overall_avg"]
    assert set(rows[0].avg_scores) == {"faithfulness", "visual_correctness", "text_accuracy", "aesthetics", "overall"}
    assert rows[0].avg_scores["overall"] == 0.6167 and rows[0].count == 3
    assert rows[2].count == rows[0].count + rows[1].count


def test_wise_weights():
    areas = {"Cultural knowledge": 1.0, "Time": 0.5, "Space": 0.0, "Biology": 1.0, "Physical Knowledge": 1.0, "Chemistry": 0.0}
    items = [ItemResult(id=i, category=c, judged=True, overall=v) for i, (c, v) in enumerate(areas.items())]
    verified = wise_tables(items, "verified", resamples=50)
    assert verified["overall"]["reference"] == round(0.4 * 1 + 0.12 * (0.5 + 0 + 1 + 1 + 0), 4)
    legacy = wise_tables(items, "legacy", resamples=50)
    assert legacy["overall"]["reference"] == round(0.4 + 0.167 * 0.5 + 0.1 + 0.1, 4)
    assert wise_tables([*items, ItemResult(id=99, category="Music")], "verified", resamples=0)["unknown_categories"] == {"Music": 1}


@pytest.mark.parametrize("raw, expected", [
    ('{"rationale": "Constraints: x", "faithfulness": 1, "visual_correctness": 0.4, "text_accuracy": "1", "aesthetics": 0.8}',
     {"faithfulness": 1.0, "visual_correctness": 0.4, "text_accuracy": 1.0, "aesthetics": 0.8}),
    ('```json\n{"faithfulness": 0.5, "visual_correctness": 0.25, "text_accuracy": 0, "text_accuracy_na": "true", "aesthetics": 0,}\n```',
     {"faithfulness": 0.5, "visual_correctness": 0.25, "text_accuracy": 0.5, "aesthetics": 0.0}),
])
def test_knowgen_answers_are_repaired_and_clipped_not_snapped(raw, expected):
    score = parse_judgement("knowgen", raw)
    assert score.scores == expected and score.raw == raw


def test_other_judges_and_bad_answers():
    assert parse_judgement("wise-legacy", '{"consistency": 2, "realism": 1.4, "aesthetic_quality": 0}').overall == 0.8
    assert parse_judgement("wise-verified", '{"score": 1, "rationale": "ok"}').overall == 1.0
    assert parse_judgement("text", '{"score": 0.6}').overall == 0.5
    assert snap(0.375, (0.0, 0.25, 0.5)) == 0.25  # ties go down
    for raw in ("I'm sorry, I can't help with that.", '{"faithfulness": "high"}', '{"score": "high"}'):
        with pytest.raises(ValueError):
            parse_judgement("knowgen" if "faith" in raw or "sorry" in raw else "wise-verified", raw)


def test_paired_comparison_flags_real_differences_only():
    a = [judged(i, "sports", 1, 0, 0, 1) for i in range(40)]
    b = [judged(i, "sports", 1, 1, 1, 1) if i < 30 else judged(i, "sports", 1, 0, 0, 1) for i in range(40)]
    result = compare(a, b, lambda items: knowgen_overall(items, strict=False), resamples=500)
    assert result["paired_items"] == 40 and result["delta"] > 0 and result["significant"]
    assert len(result["improved"]) == 30 and result["regressed"] == []
    same = compare(a, a, lambda items: knowgen_overall(items, strict=False), resamples=200)
    assert same["delta"] == 0 and not same["significant"]
