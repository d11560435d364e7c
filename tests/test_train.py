"""Training is deterministic, resumable to the same weights, and stops loudly on a non-finite loss."""
import itertools
from dataclasses import replace

import pytest
import torch

from helpers.checkpoints import load_checkpoint
from helpers.device import machine_name
from helpers.experiments import get_experiment
from helpers.tasks import sample_sinusoid_tasks
from helpers.train import TrainConfig, train


def short_run(tmp_path, n_iterations, *, path=None, seed=0, meta_lr=1e-3, stop_after_seconds=None,
              stop_at_iteration=None, cosine_meta_lr=False, validation_tasks=None, interrupt_at_batch=None):
    experiment = get_experiment("sinusoid_maml")
    sampler = experiment.make_sampler()
    config = TrainConfig(n_iterations=n_iterations, meta_lr=meta_lr, seed=seed, log_every=10, checkpoint_every=20,
                         cosine_meta_lr=cosine_meta_lr)
    model = experiment.new_model(seed)
    if interrupt_at_batch is not None:
        sampler = interrupting(sampler, interrupt_at_batch)
    return train(model, experiment.make_objective(model), sampler, config,
                 experiment=experiment.name, objective_config=experiment.objective_config,
                 checkpoint_path=path, device="cpu", progress=False, stop_after_seconds=stop_after_seconds,
                 stop_at_iteration=stop_at_iteration, validate=lambda model: float(validation_tasks or 0),
                 validate_every=10, validation_tasks=validation_tasks)


def interrupting(sampler, at_batch):
    """The sampler, with a Ctrl-C arriving while it draws batch number `at_batch` (from 1)."""
    drawn = itertools.count(1)

    def sample(generator):
        if next(drawn) == at_batch:
            raise KeyboardInterrupt
        return sampler(generator)
    return sample


def weights(result):
    return torch.cat([p.detach().flatten() for p in result.model.parameters()])


def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path):
    a, b, c = short_run(tmp_path, 30), short_run(tmp_path, 30), short_run(tmp_path, 30, seed=1)
    assert torch.equal(weights(a), weights(b)) and a.loss_history == b.loss_history
    assert not torch.equal(weights(a), weights(c))


def test_resumed_run_ends_with_the_same_weights(tmp_path, capsys):
    unbroken = short_run(tmp_path, 60)
    path = tmp_path / "run.pt"
    first = short_run(tmp_path, 40, path=path)  # "interrupted" after the checkpoint at 40
    assert first.iteration == 40 and "resuming" not in capsys.readouterr().out
    resumed = short_run(tmp_path, 60, path=path)
    assert f"resuming from iteration 40 of {path}" in capsys.readouterr().out
    assert resumed.iteration == 60
    assert torch.equal(weights(unbroken), weights(resumed))
    assert resumed.loss_history == unbroken.loss_history


def test_each_validation_score_keeps_its_task_count_across_a_change_and_an_old_checkpoint(tmp_path):
    path = tmp_path / "run.pt"
    short_run(tmp_path, 20, path=path)  # validated without a count: as a checkpoint from before counts were kept
    payload = torch.load(path, weights_only=False)
    del payload["validation_tasks"]  # the format written before the field existed
    torch.save(payload, path)
    old = load_checkpoint(path)
    assert old.validation_tasks == [] and [c for _, _, c in old.validation_points()] == [None, None]
    short_run(tmp_path, 40, path=path, validation_tasks=100)
    resumed = short_run(tmp_path, 60, path=path, validation_tasks=300)
    points = load_checkpoint(path).validation_points()
    assert [(it, count) for it, _, count in points] == [(10, None), (20, None), (30, 100), (40, 100), (50, 300),
                                                       (60, 300)]
    assert [score for _, score, _ in points][2:] == [100.0, 100.0, 300.0, 300.0]
    assert resumed.checkpoint.validation_tasks == [count for _, _, count in points]


def test_the_returned_checkpoint_is_the_end_state_with_or_without_a_file(tmp_path):
    # with a file, the run hands back the state it last wrote instead of copying it again
    for n_iterations in (60, 55):  # ending on a checkpoint, and on a short last loss block between checkpoints
        path = tmp_path / f"{n_iterations}.pt"
        kept, unkept = short_run(tmp_path, n_iterations, path=path), short_run(tmp_path, n_iterations)
        ends = [kept.checkpoint, unkept.checkpoint, load_checkpoint(path)]
        assert [end.iteration for end in ends] == [n_iterations] * 3
        for end in ends[1:]:
            assert end.loss_history == ends[0].loss_history and end.validation_history == ends[0].validation_history
            assert torch.equal(end.generator_state, ends[0].generator_state)
            assert all(torch.equal(end.state_dict[k], v) for k, v in ends[0].state_dict.items())
            steps = [state["step"] for state in end.optimizer_state["state"].values()]
            assert all(float(step) == n_iterations for step in steps)


def test_time_budget_stops_at_a_log_boundary_and_resumes_to_the_same_weights(tmp_path):
    unbroken = short_run(tmp_path, 60)
    path = tmp_path / "run.pt"
    stopped = short_run(tmp_path, 60, path=path, stop_after_seconds=0.0)  # out of time after the first log
    assert stopped.iteration == 10 and len(stopped.loss_history) == 1
    assert torch.load(path, weights_only=False)["iteration"] == 10
    resumed = short_run(tmp_path, 60, path=path)
    assert resumed.iteration == 60 and torch.equal(weights(unbroken), weights(resumed))


def test_an_interruption_saves_the_last_whole_block_and_resumes_to_the_same_weights(tmp_path, capsys):
    unbroken = short_run(tmp_path, 60)
    path = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):  # inside the fourth block; the last checkpoint was at 20
        short_run(tmp_path, 60, path=path, interrupt_at_batch=36)
    saved = load_checkpoint(path)
    assert saved.iteration == 30 and len(saved.loss_history) == 3 and len(saved.validation_history) == 3
    assert "interrupted; saved iteration 30" in capsys.readouterr().out
    resumed = short_run(tmp_path, 60, path=path)
    assert torch.equal(weights(unbroken), weights(resumed)) and resumed.loss_history == unbroken.loss_history
    with pytest.raises(KeyboardInterrupt):  # right after a checkpoint: nothing newer to save, the file kept
        short_run(tmp_path, 60, path=tmp_path / "early.pt", interrupt_at_batch=22)
    assert load_checkpoint(tmp_path / "early.pt").iteration == 20
    with pytest.raises(KeyboardInterrupt):  # before the first block ends: no file
        short_run(tmp_path, 60, path=tmp_path / "none.pt", interrupt_at_batch=5)
    assert not (tmp_path / "none.pt").exists()


@pytest.mark.parametrize("cosine_meta_lr", [False, True])
def test_stopping_at_an_iteration_keeps_the_schedule_and_resumes_to_the_same_weights(tmp_path, cosine_meta_lr):
    # a cosine learning rate depends on n_iterations at every step: a stop point must not shorten the schedule
    unbroken = short_run(tmp_path, 60, cosine_meta_lr=cosine_meta_lr)
    path = tmp_path / "run.pt"
    stopped = short_run(tmp_path, 60, path=path, stop_at_iteration=30, cosine_meta_lr=cosine_meta_lr)
    saved = torch.load(path, weights_only=False)
    assert stopped.iteration == 30 and saved["iteration"] == 30 and len(stopped.loss_history) == 3
    assert saved["train_config"]["n_iterations"] == 60
    resumed = short_run(tmp_path, 60, path=path, cosine_meta_lr=cosine_meta_lr)
    assert resumed.iteration == 60 and torch.equal(weights(unbroken), weights(resumed))
    assert resumed.loss_history == unbroken.loss_history


def test_a_stop_inside_a_loss_block_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"stop_at_iteration \(25\) must be a multiple of log_every \(10\)"):
        short_run(tmp_path, 60, stop_at_iteration=25)


def test_a_cosine_schedule_resumed_with_another_length_is_refused(tmp_path):
    path = tmp_path / "run.pt"
    short_run(tmp_path, 20, path=path, cosine_meta_lr=True)
    with pytest.raises(ValueError, match=r"cannot resume.*n_iterations: saved 20 vs now 40"):
        short_run(tmp_path, 40, path=path, cosine_meta_lr=True)
    plain = tmp_path / "plain.pt"  # a constant learning rate: the length is only where the run ends
    short_run(tmp_path, 20, path=plain)
    assert short_run(tmp_path, 40, path=plain).iteration == 40


def test_the_command_stops_at_until_and_records_the_full_schedule(tmp_path):
    from helpers.__main__ import main
    out = tmp_path / "short.pt"
    assert main(["train", "sinusoid_maml", "--iterations", "400", "--until", "200", "--out", str(out),
                 "--no-compile"]) == 0
    saved = torch.load(out, weights_only=False)
    assert saved["iteration"] == 200 and saved["train_config"]["n_iterations"] == 400


def test_each_legs_scores_are_kept_and_a_rescore_replaces_its_own(tmp_path, monkeypatch):
    import helpers.__main__ as cli
    scorings = itertools.count(1)
    monkeypatch.setattr(cli, "experiment_metrics", lambda *args, **kwargs: {"scoring": next(scorings)})
    out = tmp_path / "legs.pt"
    for until in ("100", "200"):
        assert cli.main(["train", "sinusoid_maml", "--iterations", "400", "--until", until, "--out", str(out),
                         "--no-compile"]) == 0
    assert load_checkpoint(out).test_history[0]["command"].endswith(f"--until 100 --out {out} --no-compile")
    assert cli.main(["evaluate", "sinusoid_maml", "--checkpoint", str(out)]) == 0
    saved = load_checkpoint(out)
    assert [(e["iteration"], e["metrics"]["scoring"]) for e in saved.test_history] == [(100, 1), (200, 3)]
    assert saved.metrics == saved.test_history[-1]["metrics"] and "train_seconds_this_run" in saved.metrics
    first, second = (entry["metrics"]["leg"] for entry in saved.test_history)  # the rescore kept its leg
    assert (first["from_iteration"], second["from_iteration"]) == (0, 100)
    assert second["device"] == "cpu" and second["threads"] == torch.get_num_threads()
    assert second["machine"] == machine_name(torch.device("cpu")) and second["ms_per_iteration"] > 0
    cli.main(["train", "sinusoid_maml", "--iterations", "400", "--until", "300", "--out", str(out), "--fresh",
              "--no-compile"])
    assert [e["iteration"] for e in load_checkpoint(out).test_history] == [300], "a fresh run has no past"


def test_the_command_saves_an_interrupted_run_and_exits_130(tmp_path, monkeypatch, capsys):
    import helpers.__main__ as cli
    real = get_experiment("sinusoid_maml")  # log_every 100, checkpoint_every 5,000: only the interruption saves
    monkeypatch.setattr(cli, "get_experiment",
                        lambda name: replace(real, make_sampler=lambda: interrupting(real.make_sampler(), 250)))
    out = tmp_path / "cut.pt"
    assert cli.main(["train", "sinusoid_maml", "--iterations", "400", "--out", str(out), "--no-compile"]) == 130
    assert load_checkpoint(out).iteration == 200
    assert "python -m helpers evaluate sinusoid_maml" in capsys.readouterr().out


def test_scoring_an_interrupted_run_does_not_credit_it_with_the_last_legs_speed(tmp_path, monkeypatch):
    import helpers.__main__ as cli
    monkeypatch.setattr(cli, "experiment_metrics", lambda *args, **kwargs: {"scoring": 1})
    out = tmp_path / "cut.pt"
    cli.main(["train", "sinusoid_maml", "--iterations", "400", "--until", "100", "--out", str(out), "--no-compile"])
    real = get_experiment("sinusoid_maml")
    monkeypatch.setattr(cli, "get_experiment",
                        lambda name: replace(real, make_sampler=lambda: interrupting(real.make_sampler(), 150)))
    assert cli.main(["train", "sinusoid_maml", "--iterations", "400", "--out", str(out), "--no-compile"]) == 130
    saved = load_checkpoint(out)
    assert saved.iteration == 200 and saved.metrics == {}, "the metrics of iteration 100 stay in its entry"
    assert cli.main(["evaluate", "sinusoid_maml", "--checkpoint", str(out)]) == 0
    last = load_checkpoint(out).test_history[-1]
    assert last["iteration"] == 200 and last["metrics"] == {"scoring": 1}, "no leg or timing of iteration 100"


def test_resume_with_other_settings_is_refused(tmp_path):
    path = tmp_path / "run.pt"
    short_run(tmp_path, 20, path=path)
    with pytest.raises(ValueError, match=r"cannot resume.*meta_lr"):
        short_run(tmp_path, 40, path=path, meta_lr=1e-2)


def test_non_finite_loss_stops_with_a_clear_message(tmp_path):
    with pytest.raises(FloatingPointError, match=r"non-finite at iteration \d+.*lower meta_lr"):
        short_run(tmp_path, 200, meta_lr=1e6)


def test_maml_settings_give_their_inner_loop_and_record_plain_numbers():
    """The settings stay the checkpoint's record (see test_shipped_checkpoints); the objective runs their InnerLoop."""
    import torch.nn.functional as F

    from helpers.experiments import MAMLSettings, maml_objective
    from helpers.maml import InnerLoop

    settings = MAMLSettings(0.4, 5, 16, 1, 1, first_order=True, task_batching="loop")
    assert settings.inner_loop(F.cross_entropy) == InnerLoop(0.4, 5, first_order=True, loss_fn=F.cross_entropy)
    assert settings.inner_loop() == InnerLoop(0.4, 5, first_order=True)  # the MSE, for regression
    model = get_experiment("omniglot_5way_1shot").make_model()
    assert maml_objective(model, settings, loss_fn=F.cross_entropy).inner == settings.inner_loop(F.cross_entropy)
    assert get_experiment("sinusoid_maml").objective_config == {
        "objective": "maml", "inner_lr": 0.01, "n_inner_steps": 1, "meta_batch_size": 25, "k_shot": 10,
        "n_query": 10, "first_order": False, "task_batching": "vmap"}


def test_looped_maml_steps_with_the_per_task_gradient_and_matches_vmap():
    """train uses MAMLObjective.gradient (one task's graph alive at a time); it ends where vmap's run ends."""
    from helpers.experiments import MAMLSettings, maml_objective
    from helpers.tasks import sample_sinusoid_tasks
    from helpers.train import _gradient_function

    results = {}
    for task_batching in ("vmap", "loop"):
        model = get_experiment("sinusoid_maml").new_model(0)
        objective = maml_objective(model, MAMLSettings(0.01, 1, 5, 10, 10, task_batching=task_batching))
        assert _gradient_function(objective, compile=False) == objective.gradient
        sample = lambda g: sample_sinusoid_tasks(5, 10, 10, generator=g)  # noqa: E731
        results[task_batching] = train(model, objective, sample, TrainConfig(n_iterations=20, log_every=10),
                                       experiment="sinusoid_maml", objective_config={}, device="cpu", progress=False)
    assert torch.allclose(weights(results["vmap"]), weights(results["loop"]), atol=1e-5)
    assert results["vmap"].loss_history == pytest.approx(results["loop"].loss_history, rel=1e-4)


def clipped_run(clip, n_iterations=3):
    experiment = get_experiment("sinusoid_maml")
    config = TrainConfig(n_iterations=n_iterations, meta_lr=1e-2, log_every=1, checkpoint_every=1,
                         clip_grad_value=clip)
    model = experiment.new_model(0)
    return train(model, experiment.make_objective(model), experiment.make_sampler(), config,
                 experiment=experiment.name, objective_config=experiment.objective_config, device="cpu",
                 progress=False)


def test_clip_grad_value_clamps_the_meta_gradient_before_adam():
    """Three iterations with clipping equal Adam on the clamped meta-gradients of the same batches.

    (Adam's first step ignores gradient magnitudes, so one iteration could not tell.)
    """
    clip = 0.05
    experiment = get_experiment("sinusoid_maml")
    reference = experiment.new_model(0)
    params = dict(reference.named_parameters())
    objective, sampler = experiment.make_objective(reference), experiment.make_sampler()
    optimizer = torch.optim.Adam(reference.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        grads, _ = objective.gradient(params, sampler(generator))
        assert max(g.abs().max() for g in grads.values()) > clip  # so the clamp matters
        for name, p in params.items():
            p.grad = grads[name].clamp(-clip, clip)
        optimizer.step()
    expected = torch.cat([p.detach().flatten() for p in reference.parameters()])
    assert torch.allclose(weights(clipped_run(clip)), expected, atol=1e-7, rtol=0)
    assert not torch.allclose(weights(clipped_run(None)), expected, atol=1e-5, rtol=0)


def test_bad_clip_value_is_refused():
    with pytest.raises(ValueError, match="clip_grad_value must be a finite number > 0"):
        TrainConfig(n_iterations=1, clip_grad_value=0.0)


def test_prefetcher_hands_over_the_batches_and_generator_states_of_a_plain_loop():
    """What training on a GPU draws ahead on a thread is what a plain loop draws, in order, each with the
    generator's state right after it (the state a checkpoint after that iteration holds)."""
    from helpers.prefetch import Prefetcher

    def sample(g):
        return sample_sinusoid_tasks(3, 2, 2, generator=g)

    plain_generator = torch.Generator().manual_seed(5)
    plain = [(sample(plain_generator), plain_generator.get_state()) for _ in range(7)]
    prefetcher = Prefetcher(sample, torch.Generator().manual_seed(5), 7, pin_memory=False, depth=2)
    try:
        fetched = [next(prefetcher) for _ in range(7)]
    finally:
        prefetcher.close()
    for (batch, state), (expected, expected_state) in zip(fetched, plain):
        assert torch.equal(batch.x_support, expected.x_support) and torch.equal(batch.y_query, expected.y_query)
        assert torch.equal(state, expected_state)


def test_prefetcher_raises_the_samplers_error_and_stops_when_closed():
    from helpers.prefetch import Prefetcher

    def broken(g):
        raise ValueError("no data")

    prefetcher = Prefetcher(broken, torch.Generator(), 3, pin_memory=False)
    with pytest.raises(ValueError, match="no data"):
        next(prefetcher)
    prefetcher.close()
    endless = Prefetcher(lambda g: torch.rand(1, generator=g), torch.Generator(), 10**6, pin_memory=False, depth=1)
    endless.close()
    assert not endless._thread.is_alive()


@pytest.mark.parametrize("broken", [False, True])
def test_compiled_gradient_is_used_only_after_it_matched_the_eager_one(monkeypatch, broken):
    """A compiled gradient that comes out wrong on the first batch (NaN, as torch.compile gave for the pretrained
    baseline under ATEN_CPU_CAPABILITY=avx2) is dropped with a warning; a right one is used from then on."""
    import helpers.train
    from torch.func import grad_and_value

    def objective(params, batch):
        return ((params["w"] * batch) ** 2).sum()

    def fake_compile(fn, **kwargs):
        def run(params, batch):
            grads, loss = fn(params, batch)
            calls.append("compiled")
            return ({k: g * float("nan") for k, g in grads.items()}, loss * float("nan")) if broken else (grads, loss)
        return run

    calls = []
    monkeypatch.setattr(helpers.train.torch, "compile", fake_compile)
    gradient = helpers.train._gradient_function(objective, compile=True)
    params = {"w": torch.tensor([1.0, 2.0], requires_grad=True)}
    batch = torch.tensor([3.0, 4.0])
    expected, expected_loss = grad_and_value(objective)({"w": params["w"].detach()}, batch)
    if broken:
        with pytest.warns(RuntimeWarning, match="does not match the eager one"):
            grads, loss = gradient(params, batch)
    else:
        grads, loss = gradient(params, batch)
    assert torch.allclose(grads["w"], expected["w"]) and torch.allclose(loss, expected_loss)
    grads, loss = gradient(params, batch)  # second batch: compiled if it was right, eager if not
    assert torch.allclose(grads["w"], expected["w"])
    assert calls == (["compiled"] if broken else ["compiled", "compiled"])


def test_a_compiler_that_fails_to_build_falls_back_to_eager(monkeypatch):
    """With ATEN_CPU_CAPABILITY=default, inductor's C++ failed to compile on the first call: training goes on eager."""
    import helpers.train

    def failing_compile(fn, **kwargs):
        def run(params, batch):
            raise RuntimeError("C++ compile error")
        return run

    monkeypatch.setattr(helpers.train.torch, "compile", failing_compile)
    gradient = helpers.train._gradient_function(lambda p, b: (p["w"] * b).sum(), compile=True)
    params = {"w": torch.tensor([1.0, 2.0], requires_grad=True)}
    with pytest.warns(RuntimeWarning, match="could not build"):
        grads, loss = gradient(params, torch.tensor([3.0, 4.0]))
    assert torch.equal(grads["w"], torch.tensor([3.0, 4.0])) and loss.item() == 11.0
    assert torch.equal(gradient(params, torch.tensor([1.0, 1.0]))[0]["w"], torch.tensor([1.0, 1.0]))


def test_the_readme_names_the_block_an_interruption_keeps():
    from pathlib import Path

    from helpers.experiments import EXPERIMENTS, FEWSHOT_CELLS
    readme = " ".join((Path(__file__).resolve().parent.parent / "README.md").read_text().split())
    blocks = {name: get_experiment(name).train_config.log_every for name in EXPERIMENTS}
    fewshot = {blocks[name] for name in FEWSHOT_CELLS}
    sinusoid = {blocks[name] for name in blocks if name.startswith("sinusoid")}
    assert len(fewshot) == len(sinusoid) == 1
    assert (f"last whole block of iterations ({fewshot.pop()} for the few-shot cells, {sinusoid.pop()} for the "
            "sinusoid)") in readme
