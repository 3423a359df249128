"""The VLM judge: KnowGen, WISE (verified, legacy) and the text-only judge of the RL reward.

Used by evaluation (`gensearcher.evaluate`) and, next, by the GRPO reward. `rubrics/` holds our own
wording; `load_rubric_file` reads a replacement (the original, from the user's own copy).
"""

from gensearcher.judge.judge import (
    Judge,
    JudgeError,
    JudgeScore,
    Kind,
    default_rubric,
    load_rubric_file,
    parse_judgement,
)

__all__ = ["Judge", "JudgeError", "JudgeScore", "Kind", "default_rubric", "load_rubric_file", "parse_judgement"]
