"""Benchmark evaluation: data loaders, the VLM judge, scores and tables, the eval pipeline, the report.

    data.py      KnowGen, WISE (verified, legacy), custom prompts
    judge.py     the judge (KnowGen, WISE, text-only reward), with a cache; rubrics/ in our words
    judging.py   judge a generation output, in the reference evaluation format
    scores.py    aggregation (reference and strict), bootstrap intervals, paired comparison
    pipeline.py  research -> generation -> judging, resumable
    report.py    the HTML report
"""

from gensearcher.evaluate.data import EvalItem, load_custom, load_knowgen, load_wise
from gensearcher.evaluate.judge import Judge, JudgeError, JudgeScore, parse_judgement
from gensearcher.evaluate.scores import ItemResult, compare, knowgen_tables, wise_tables

__all__ = [
    "EvalItem",
    "ItemResult",
    "Judge",
    "JudgeError",
    "JudgeScore",
    "compare",
    "knowgen_tables",
    "load_custom",
    "load_knowgen",
    "load_wise",
    "parse_judgement",
    "wise_tables",
]
