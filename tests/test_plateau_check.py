"""tools/plateau_check.py: the split-gap and step-size measurements behind a plateaued cell's write-up."""
import sys
from pathlib import Path

import torch

from helpers.experiments import FEWSHOT_CELLS, fewshot_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import plateau_check  # noqa: E402

NAME = "omniglot_5way_1shot"


def _images(seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (12, 20, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return fewshot_model(FEWSHOT_CELLS[NAME])


def test_split_gap_scores_each_split_on_its_own_classes_with_the_same_episodes() -> None:
    same, other = _images(0), _images(1)
    gap = plateau_check.split_gap(NAME, _model(), 4, (0, 1, 3), {"train": same, "val": other, "test": same})
    assert set(gap) == {"train", "val", "test"} and all(set(rows) == {0, 1, 3} for rows in gap.values())
    assert gap["train"] == gap["test"]  # same images, same seed: the same episodes
    assert gap["val"] != gap["test"]
    assert all(0 <= mean <= 100 and ci >= 0 for rows in gap.values() for mean, ci in rows.values())


def test_step_sizes_share_episodes_so_only_the_adapted_steps_differ() -> None:
    sizes = plateau_check.step_sizes(NAME, _model(), 4, (0, 1), _images(2), factors=(1.0, 5.0))
    assert sizes[1.0][0] == sizes[5.0][0]  # no step taken yet: the same episodes score the same
    assert sizes[1.0][1] != sizes[5.0][1]
    text = plateau_check.table("validation, α times", sizes, (0, 1))
    assert text.splitlines()[0] == "| validation, α times | after 0 steps | after 1 step |"
    assert len(text.splitlines()) == 4
