"""Review: an excluded rollout must weigh nothing, whichever micro-batch TRL's shuffle puts it in.

TRL shuffles the generation batch and splits it into micro-batches. For the losses that divide by the
number of rows (dr_grpo, the default, and grpo), the trainer rescaled the advantages by rows / kept rows
of each micro-batch. That made the window's loss depend on the shuffle: a kept rollout that shares its
micro-batch with an excluded one counted double, and a micro-batch of excluded rollouts only halved the
others. The window loss must equal the loss of the kept rollouts alone, for every arrangement.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("trl")
torch = pytest.importorskip("torch")

from gensearcher.testing.image_apis import KEY, ImageApis  # noqa: E402
from tests.conftest import make_image  # noqa: E402
from tests.train.test_grpo import GradedJudge, batch_inputs, tasks_file, trainer_for  # noqa: E402


def micro_batches(output: dict[str, Any], order: list[int], count: int) -> list[dict[str, Any]]:
    """TRL's own split of a generation batch (`_prepare_inputs`), with a chosen order instead of a random one."""
    from trl.trainer.utils import split_pixel_values_by_grid, split_tensor_dict, unsplit_pixel_values_by_grid

    batch = split_pixel_values_by_grid(output)
    permutation = torch.tensor(order)

    def permute(value: Any) -> Any:
        if value is None or (isinstance(value, torch.Tensor) and value.ndim == 0):
            return value
        return value[permutation] if isinstance(value, torch.Tensor) else [value[i] for i in order]

    batch = {key: permute(value) for key, value in batch.items()}
    return [unsplit_pixel_values_by_grid(chunk) for chunk in split_tensor_dict(batch, count)]


def window_gradient(trainer: Any, chunks: list[dict[str, Any]], accumulation: int, per_generation: int) -> Any:
    """The gradient one optimizer step takes from these micro-batches (TRL's accumulation normalisers)."""
    trainer.current_gradient_accumulation_steps = accumulation
    trainer.args.steps_per_generation = per_generation
    trainer.model.zero_grad()
    for chunk in chunks:
        trainer._compute_loss(trainer.model, chunk).backward()
    return torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None])


@pytest.mark.parametrize("loss_type", ["dr_grpo", "grpo", "dapo"])
def test_the_window_loss_is_the_kept_rollouts_loss_whatever_the_shuffle(tiny_checkpoint, local_web, tmp_path,
                                                                        loss_type):
    gt = make_image(tmp_path / "gt.png", size=(256, 256))
    tasks = tasks_file(tmp_path, {"A poster of the green team": gt, "A poster of the lost team": tmp_path / "no.png"})
    answers = {"green team": ["green one", "a far longer green answer with many more words in it"],
               "lost team": ["lost one", "lost two"]}
    with ImageApis() as apis:
        generator = {"backend": "openai", "api_key": KEY, "api_base_url": apis.url + "/v1"}
        with trainer_for(tiny_checkpoint, tmp_path / "grpo", local_web, generator, GradedJudge([0.9, 0.2]),
                         answers, tasks, loss_type=loss_type, max_excluded_fraction=0.5) as (trainer, _):
            trainer.model.train()
            output = trainer._generate_and_score_completions(batch_inputs(trainer, 2))
            excluded = list(trainer._excluded)
            apart = window_gradient(trainer, micro_batches(output, [0, 1, 2, 3], 2), 2, 2)  # excluded pair together
            mixed = window_gradient(trainer, micro_batches(output, [0, 2, 1, 3], 2), 2, 2)  # one excluded in each
            # The reference: one micro-batch of exactly the kept rollouts is the whole step.
            kept = {key: value for key, value in micro_batches(output, [0, 1, 2, 3], 2)[0].items() if key != "row_scale"}
            kept_only = window_gradient(trainer, [kept], 1, 1)
    assert excluded == [False, False, True, True]
    assert kept_only.abs().max() > 1e-6  # graded rewards: the kept pair moves the weights
    for gradient in (apart, mixed):
        assert torch.allclose(gradient, kept_only, rtol=1e-4, atol=1e-7), float((gradient / kept_only).nanmean())
