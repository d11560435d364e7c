"""The shipped few-shot checkpoints: Omniglot 5-way 1-shot reaches the paper's 98.7%; every cell says what it is."""
import pytest

from helpers.checkpoints import load_checkpoint
from helpers.evaluate import evaluate_fewshot
from helpers.experiments import FEWSHOT_CELLS, PAPER_OMNIGLOT, get_experiment
from helpers.omniglot import load_omniglot

from test_omniglot import SHARED, needs_data


@pytest.fixture(scope="module")
def test_images():
    return load_omniglot(SHARED).split_images("test")


@needs_data
def test_5way_1shot_reaches_the_paper(test_images):
    """600 seeded test tasks scored as the paper's reference code does (1 query image per class)."""
    experiment = get_experiment("omniglot_5way_1shot")
    checkpoint = load_checkpoint(experiment.checkpoint_path, expected_model_config=experiment.make_model().config())
    model = checkpoint.build_model()
    curve = evaluate_fewshot(model, dict(model.named_parameters()), test_images, n_way=5, k_shot=1, n_query=1,
                             n_tasks=600, inner_lr=0.4, max_steps=1)
    paper = PAPER_OMNIGLOT["omniglot_5way_1shot"][0]
    assert 100 * curve.mean[1] >= paper, f"after 1 step: {100 * curve.mean[1]:.2f}% < paper {paper}%"
    assert curve.mean[0] < 0.3  # the initialisation alone is near chance (20%)
    stored = checkpoint.metrics["test_accuracy_step1"]["mean"]
    assert abs(stored - 100 * float(curve.mean[1])) < 0.01, "metadata disagrees with a fresh evaluation"


SHIPPED = sorted(name for name in FEWSHOT_CELLS if get_experiment(name).checkpoint_path.exists())


def test_the_paper_cell_and_at_least_one_more_of_each_data_set_are_shipped():
    assert "omniglot_5way_1shot" in SHIPPED, SHIPPED
    for dataset in ("omniglot", "miniimagenet"):
        assert sum(FEWSHOT_CELLS[name].dataset == dataset for name in SHIPPED) >= 2, SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_cell_has_its_settings_and_scores(name):
    experiment = get_experiment(name)
    checkpoint = load_checkpoint(experiment.checkpoint_path, expected_model_config=experiment.make_model().config())
    cell = FEWSHOT_CELLS[name]
    config = checkpoint.train_config
    assert (config["data"], config["n_way"], config["k_shot"], config["inner_lr"], config["n_inner_steps"],
            config["meta_batch_size"], config["n_query"], config["first_order"]) == (
        cell.dataset, cell.n_way, cell.k_shot, cell.inner_lr, cell.n_inner_steps, cell.meta_batch_size, cell.n_query,
        cell.first_order)
    assert config.get("clip_grad_value") == cell.clip_grad_value
    assert 0 < checkpoint.iteration <= config["n_iterations"] == 60_000
    assert checkpoint.command.startswith(f"python -m helpers train {name}")
    assert checkpoint.optimizer_state is not None and checkpoint.generator_state is not None  # resumable
    for key in ("test_accuracy", "test_accuracy_15query"):
        for steps in (0, cell.n_inner_steps, cell.test_steps, 10):
            result = checkpoint.metrics[f"{key}_step{steps}"]
            assert 0 <= result["mean"] <= 100 and result["ci95"] >= 0
            # an unadapted net that gives every image the same class scores exactly 1/N on every task (labels
            # are drawn afresh per task): the one case where 600 tasks can agree to the last digit
            exactly_chance = steps == 0 and abs(result["mean"] - 100 / cell.n_way) < 1e-9
            assert result["ci95"] > 0 or exactly_chance, (key, steps, result)
    assert checkpoint.metrics["test_tasks"] >= 100 and checkpoint.metrics["query_per_class"] == cell.k_shot
    learned = checkpoint.metrics[f"test_accuracy_step{cell.test_steps}"]["mean"]
    assert learned > 100 / cell.n_way + 10, learned  # well above chance on classes never trained on


@pytest.mark.parametrize("name", ["omniglot_5way_5shot", "miniimagenet_5way_1shot_first_order"])
def test_fast_path_scores_a_shipped_checkpoint_as_the_paper_net_does(name):
    """Evaluation runs fused batch norm (and for MiniImagenet channels-last and pool-before-ReLU); on the same 20
    seeded test tasks the net as the paper writes it must classify the same (one flipped prediction in 100 is
    float32 rounding)."""
    from helpers.experiments import fewshot_images
    from helpers.models import as_the_paper_writes_it

    import test_miniimagenet
    cell = FEWSHOT_CELLS[name]
    if not (SHARED if cell.dataset == "omniglot" else test_miniimagenet.SHARED).exists():
        pytest.skip(f"{cell.dataset} data not found")
    checkpoint = load_checkpoint(get_experiment(name).checkpoint_path)
    if not checkpoint.metrics:
        pytest.skip("checkpoint is mid-training (no scores yet)")
    model = checkpoint.build_model()
    assert model.channels_last == (cell.dataset == "miniimagenet")
    images = fewshot_images(cell.dataset, "test")
    curves = [evaluate_fewshot(net, dict(model.named_parameters()), images, n_way=cell.n_way, k_shot=cell.k_shot,
                               n_query=1, n_tasks=20, inner_lr=cell.inner_lr, max_steps=5,
                               rotate=cell.dataset == "omniglot", task_batching="loop")
              for net in (model, as_the_paper_writes_it(model))]
    difference = (curves[0].mean - curves[1].mean).abs().max()
    assert difference <= 1 / (20 * cell.n_way) + 1e-9, (curves[0].mean, curves[1].mean)
    assert curves[0].mean[5] > curves[0].mean[0]  # adapted: the scores compared are not both at chance


@needs_data
def test_scoring_reports_each_chunk_and_the_command_shows_a_bar(test_images, tmp_path, capsys):
    import shutil

    from helpers.__main__ import main
    experiment = get_experiment("omniglot_5way_1shot")
    model = load_checkpoint(experiment.checkpoint_path).build_model()
    chunks = []
    evaluate_fewshot(model, dict(model.named_parameters()), test_images, n_way=5, k_shot=1, n_query=1, n_tasks=7,
                     inner_lr=0.4, max_steps=1, chunk=3, on_chunk=chunks.append)
    assert chunks == [3, 3, 1]
    copy = shutil.copy(experiment.checkpoint_path, tmp_path / "copy.pt")
    assert main(["evaluate", "omniglot_5way_1shot", "--checkpoint", str(copy), "--tasks", "4", "--device", "cpu"]) == 0
    shown = capsys.readouterr().out
    assert "scoring omniglot_5way_1shot on 4 test tasks, twice" in shown and "8/8" in shown
