"""Training the policy: SFT over TRL (`sft.py`), its config (`config.py`) and batches (`collator.py`)."""
