"""tools/reference_recipe.py: the reference code's loss and net, as the A/B runs of the Table 1 cells use them."""
import os
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from helpers.experiments import FEWSHOT_CELLS, fewshot_model
from helpers.maml import InnerLoop, adapt
from helpers.models import BatchStatsNorm2d

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import reference_recipe  # noqa: E402

OMNIGLOT = Path(os.environ.get("OMNIGLOT_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data" / "omniglot")


def test_summed_loss_is_n_times_the_mean_so_a_step_is_n_times_as_large() -> None:
    torch.manual_seed(0)
    n_way, k_shot = 5, 3
    logits, labels = torch.randn(n_way * k_shot, n_way), torch.arange(n_way).repeat_interleave(k_shot)
    summed = reference_recipe.summed_over_shots(k_shot)(logits, labels)
    torch.testing.assert_close(summed, n_way * F.cross_entropy(logits, labels))


def test_reference_net_has_no_batch_norm_scale_and_never_adapts_its_shift() -> None:
    cell = FEWSHOT_CELLS["omniglot_5way_1shot"]
    torch.manual_seed(0)
    model = fewshot_model(cell)
    adapted = reference_recipe.reference_net(model, cell)
    norms = [m for m in model.modules() if isinstance(m, BatchStatsNorm2d)]
    assert all("weight" not in dict(m.named_parameters()) and m.eps == 1e-3 for m in norms)
    assert model.classifier.in_features == 64 and model(torch.rand(3, 1, 28, 28)).shape == (3, 5)
    params = dict(model.named_parameters())
    assert set(params) - adapted == {f"features.{i}.bias" for i in (1, 4, 7, 10)}
    x, y = torch.rand(5, 1, 28, 28), torch.arange(5)
    after = adapt(model, params, x, y, InnerLoop(0.4, 2, loss_fn=reference_recipe.summed_over_shots(1),
                                                 adapted=adapted))
    assert all(torch.equal(after[name], params[name]) for name in set(params) - adapted)
    assert not torch.equal(after["features.0.weight"], params["features.0.weight"])


def test_per_image_factor_turns_the_summed_query_loss_into_the_mean() -> None:
    torch.manual_seed(0)
    for name in ("omniglot_20way_1shot", "miniimagenet_5way_1shot"):
        cell = FEWSHOT_CELLS[name]
        images = cell.n_way * cell.n_query
        logits, labels = torch.randn(images, cell.n_way), torch.arange(cell.n_way).repeat_interleave(cell.n_query)
        summed = reference_recipe.summed_over_shots(cell.k_shot)(logits, labels)
        torch.testing.assert_close(summed * reference_recipe.per_image(cell, True), F.cross_entropy(logits, labels))
        assert reference_recipe.per_image(cell, False) == 1.0


@pytest.mark.skipif(not (OMNIGLOT / "images_background.zip").is_file(), reason=f"no Omniglot archives in {OMNIGLOT}")
def test_variants_train_from_the_same_seed_and_report_per_image_losses() -> None:
    results = {variant: reference_recipe.run("omniglot_5way_1shot", variant, iterations=4, validate_every=4, block=2)
               for variant in ("project", "reference")}
    for result in results.values():
        assert len(result["loss_per_image"]) == 2 and [it for it, _ in result["validation"]] == [4]
        assert 0 < min(result["loss_per_image"]) and 0 <= result["validation"][0][1] <= 100
    again = reference_recipe.run("omniglot_5way_1shot", "reference", iterations=4, validate_every=4, block=2)
    assert again["loss_per_image"] == results["reference"]["loss_per_image"]  # same seed, same numbers
    assert results["project"]["loss_per_image"] != results["reference"]["loss_per_image"]
