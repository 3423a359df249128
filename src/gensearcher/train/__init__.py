"""Training the policy over TRL.

    dataset.py    our SFT dataset (rows exactly as the policy saw them) and trajectories -> rows
    sharegpt.py   LLaMA-Factory sharegpt in (Gen-Searcher-SFT-10k) and out
    rl_data.py    the RL prompt set (Gen-Searcher-RL-6k) and its seeded split
    config.py     GenSFTConfig: TRL's SFTConfig with the reference recipe as defaults
    collator.py   the batches: the agent's own rendering, loss on assistant turns only
    sft.py        train_sft over TRL's SFTTrainer
    reward.py     the GRPO reward of one rollout: generate, judge, or score 0 / exclude

Nothing here is imported by the package at import time: TRL and torch load only when training runs.
"""

__all__: list[str] = []
