"""Benchmark evaluation: data loaders, the judging runner, scores and tables, the eval pipeline, the report.

    benchmarks.py  KnowGen, WISE (verified, legacy), custom prompts, as gensearcher.data.Task
    (the judge itself is gensearcher.judge)
    runner.py    judge a generation output, in the reference evaluation format
    scores.py    aggregation (reference and strict), bootstrap intervals, paired comparison
    pipeline.py  research -> generation -> judging, resumable
    report.py    the HTML report
"""

from gensearcher.evaluate.benchmarks import load_custom, load_knowgen, load_wise
from gensearcher.evaluate.scores import ItemResult, compare, knowgen_tables, wise_tables

__all__ = [
    "ItemResult",
    "compare",
    "knowgen_tables",
    "load_custom",
    "load_knowgen",
    "load_wise",
    "wise_tables",
]
