"""One meta-training loop for every experiment: Adam on any objective, with checkpoints and resume.

MAML, the pretrained baseline and the oracle differ only in the objective that
is passed in; the loop, its progress bar, its checks and its checkpoints are shared.
"""
from __future__ import annotations

import contextlib
import copy
import math
import sys
import time
import warnings
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.func import grad_and_value
from tqdm.auto import tqdm

from .checkpoints import Checkpoint, load_checkpoint, save_checkpoint
from .checks import check_int_at_least, check_positive
from .cuda_graph import GraphedGradient
from .device import default_device
from .fast_paths import float32_numerics, uses_cuda_graphs
from .maml import Params
from .prefetch import Prefetcher

Objective = Callable[[Params, Any], Tensor]  # (params, batch) -> scalar loss
BatchSampler = Callable[[torch.Generator], Any]  # generator -> batch (with a .to(device) method)


@dataclass(frozen=True)
class TrainConfig:
    """The outer loop's settings; the objective carries its own (α, inner steps, ...)."""

    n_iterations: int
    meta_lr: float = 1e-3
    seed: int = 0
    log_every: int = 100
    checkpoint_every: int = 5_000
    compile: bool = False  # torch.compile the gradient: ~15 s once, then about 3x faster on small models
    clip_grad_value: float | None = None  # clamp each meta-gradient entry to ±this before Adam (reference code)
    cosine_meta_lr: bool = False  # MAML++: anneal meta_lr to meta_lr_min along a half cosine over n_iterations
    meta_lr_min: float = 1e-5

    def __post_init__(self) -> None:
        check_int_at_least("n_iterations", self.n_iterations, 1)
        check_positive("meta_lr", self.meta_lr)
        check_int_at_least("seed", self.seed, 0)
        check_int_at_least("log_every", self.log_every, 1)
        check_int_at_least("checkpoint_every", self.checkpoint_every, 1)
        if self.clip_grad_value is not None:
            check_positive("clip_grad_value", self.clip_grad_value)
        if self.checkpoint_every % self.log_every:
            raise ValueError(f"checkpoint_every ({self.checkpoint_every}) must be a multiple of "
                             f"log_every ({self.log_every}) so that checkpoints hold checked losses")
        check_positive("meta_lr_min", self.meta_lr_min)

    def meta_lr_at(self, iteration: int) -> float:
        """The outer learning rate for `iteration` (0-based): constant, or cosine-annealed (Antoniou et al. 2019)."""
        if not self.cosine_meta_lr:
            return self.meta_lr
        progress = min(iteration / self.n_iterations, 1.0)
        return self.meta_lr_min + 0.5 * (self.meta_lr - self.meta_lr_min) * (1 + math.cos(math.pi * progress))


@dataclass
class TrainResult:
    model: nn.Module
    loss_history: list[float]  # mean loss over each block of `log_every` iterations
    iteration: int
    checkpoint: Checkpoint
    first_iteration: int = 0  # where this call started (a resumed run starts at its checkpoint's)
    loop_seconds: float = 0.0  # wall time of this call's iterations, validation excluded


def train(
    model: nn.Module,
    objective: Objective,
    sample_batch: BatchSampler,
    config: TrainConfig,
    *,
    experiment: str,
    objective_config: dict[str, Any],
    checkpoint_path: str | Path | None = None,
    resume: bool = True,
    device: torch.device | str | None = None,
    command: str | None = None,
    progress: bool = True,
    on_log: Callable[[int, list[float]], None] | None = None,
    validate: Callable[[nn.Module], float] | None = None,
    validate_every: int = 0,
    validation_tasks: int | None = None,
    stop_after_seconds: float | None = None,
    stop_at_iteration: int | None = None,
) -> TrainResult:
    """Minimise `objective` with Adam for `config.n_iterations` iterations.

    The model's own parameters are trained in place (it is the thing being
    learnt); everything inside an iteration is functional. With a
    `checkpoint_path`, state is saved every `checkpoint_every` iterations and a
    later call resumes from it, ending with the same weights as an unbroken run.
    `on_log(iteration, loss_history)` is called every `log_every` iterations (live plots).
    `validate(model)` runs every `validate_every` iterations (a multiple of
    `log_every`); its scores are kept in the checkpoint's `validation_history`, each beside
    `validation_tasks`, the number of tasks it averages (so a curve whose count changed says where).
    `stop_after_seconds` ends the run early, at the first `log_every` boundary
    past that time, with a checkpoint that a later call resumes (a time budget,
    e.g. a borrowed GPU; it is not part of the run's settings).
    `stop_at_iteration` likewise ends the run at that iteration (a multiple of
    `log_every`) with a resumable checkpoint, leaving the schedule's length
    `n_iterations` as it is: a cosine learning rate anneals over the whole run.
    An interruption (Ctrl-C, or a notebook kernel's stop button) saves the state
    of the last whole `log_every` block to `checkpoint_path` before it propagates,
    so up to one block is lost rather than up to `checkpoint_every` iterations.
    An objective with an `at_iteration(iteration)` method is told each
    iteration before its gradient (MAML++ anneals its multi-step loss with it).
    """
    if validate is not None and (validate_every < 1 or validate_every % config.log_every):
        raise ValueError(f"validate_every must be a positive multiple of log_every ({config.log_every}), "
                         f"got {validate_every}")
    if stop_at_iteration is not None:
        check_int_at_least("stop_at_iteration", stop_at_iteration, 1)
        if stop_at_iteration % config.log_every and stop_at_iteration < config.n_iterations:
            raise ValueError(f"stop_at_iteration ({stop_at_iteration}) must be a multiple of log_every "
                             f"({config.log_every}) so that the run resumes with whole loss blocks")
    device = default_device(device)
    model = model.to(device)
    hyper = {**objective_config, **asdict(config)}
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.meta_lr, fused=device.type in ("cpu", "cuda"))
    loss_history: list[float] = []
    validation_history: list[tuple[int, float]] = []
    validation_counts: list[int | None] = []
    test_history: list[dict[str, Any]] = []  # earlier legs' test scores, carried into every save of this one
    start = 0
    if checkpoint_path is not None and resume and Path(checkpoint_path).exists():
        saved = load_checkpoint(checkpoint_path, expected_model_config=model.config())
        _check_same_run(saved, experiment, hyper)
        model.load_state_dict(saved.state_dict)
        if saved.iteration < config.n_iterations:
            if saved.optimizer_state is None or saved.generator_state is None:
                raise ValueError(f"{checkpoint_path} holds no optimizer state and cannot be resumed; "
                                 f"pass resume=False to train from scratch")
            optimizer.load_state_dict(saved.optimizer_state)
            generator.set_state(saved.generator_state)
        start, loss_history = saved.iteration, list(saved.loss_history)
        validation_history = [tuple(entry) for entry in saved.validation_history]
        validation_counts = [count for _, _, count in saved.validation_points()]
        test_history = list(saved.test_history)

    params = dict(model.named_parameters())
    at_iteration = getattr(objective, "at_iteration", None)
    gradient_fn = _gradient_function(objective, config.compile)
    # helpers.fast_paths: on CUDA the meta-gradient replays from one captured graph (not for an objective that
    # changes with the iteration, nor a compiled one), and batches are drawn ahead on a thread
    graphed = uses_cuda_graphs(device) and at_iteration is None and not config.compile
    if graphed:
        gradient_fn = GraphedGradient(gradient_fn)
    window = torch.zeros(config.log_every, device=device)
    bar = tqdm(total=config.n_iterations, initial=start, desc=experiment, disable=not progress,
               unit="it", file=sys.stdout, mininterval=0.5)
    if start:
        bar.write(f"{experiment}: resuming from iteration {start} of {checkpoint_path}")
    started, validation_seconds = time.monotonic(), 0.0
    end = config.n_iterations if stop_at_iteration is None else min(stop_at_iteration, config.n_iterations)
    on_gpu = device.type == "cuda"
    batches = (Prefetcher(sample_batch, generator, max(end - start, 0), pin_memory=True) if on_gpu
               else ((sample_batch(generator), None) for _ in range(start, end)))
    reached = _Reached(start, generator.get_state())
    saves = _Saves(saved_iteration=start)
    with contextlib.ExitStack() as cleanup:
        cleanup.enter_context(float32_numerics(device))
        if on_gpu:
            cleanup.callback(batches.close)
        cleanup.enter_context(_save_when_interrupted(saves, checkpoint_path, experiment, bar))
        for iteration, (batch, state) in zip(range(start, end), batches):
            state = generator.get_state() if state is None else state
            if not graphed:
                batch = batch.to(device, non_blocking=on_gpu)
            if at_iteration is not None:
                at_iteration(iteration)
            if config.cosine_meta_lr:
                for group in optimizer.param_groups:
                    group["lr"] = config.meta_lr_at(iteration)
            grads, loss = gradient_fn(params, batch)
            apply_meta_gradient(model, params, grads, optimizer, config.clip_grad_value)
            window[iteration % config.log_every] = loss.detach()
            done = iteration + 1
            if done % config.log_every == 0 or done == config.n_iterations:
                losses = window[: (done - 1) % config.log_every + 1].cpu()
                if not torch.isfinite(losses).all():
                    bad = int(torch.nonzero(~torch.isfinite(losses))[0]) + done - len(losses) + 1
                    bar.close()
                    raise FloatingPointError(
                        f"{experiment}: the training loss became non-finite at iteration {bad}; "
                        f"lower meta_lr (now {config.meta_lr}) or the inner learning rate, "
                        f"or resume from the last checkpoint")
                loss_history.append(float(losses.mean()))
                bar.set_postfix(loss=f"{loss_history[-1]:.4f}", refresh=False)
                bar.update(done - bar.n)
                if validate is not None and done % validate_every == 0:
                    validating = time.monotonic()
                    validation_history.append((done, float(validate(model))))
                    validation_counts.append(validation_tasks)
                    validation_seconds += time.monotonic() - validating
                    bar.write(f"{experiment}: iteration {done}, validation score {validation_history[-1][1]:.4f}")
                if on_log is not None:
                    on_log(done, loss_history)
            else:  # the bar moves every iteration (a 20-way 5-shot block is minutes on a CPU); the loss once a block
                bar.update()
            reached = _Reached(done, state)
            out_of_time = (stop_after_seconds is not None and done % config.log_every == 0
                           and time.monotonic() - started > stop_after_seconds)
            checkpoint_due = done % config.checkpoint_every == 0 or done == end or out_of_time
            if checkpoint_path is not None and (checkpoint_due or done % config.log_every == 0):
                saves.whole_block = _snapshot(model, optimizer, state, done, loss_history, validation_history,
                                              validation_counts, test_history, experiment, hyper, command)
                if checkpoint_due:
                    save_checkpoint(saves.whole_block, checkpoint_path)
                    saves.saved_iteration = done
            if out_of_time:
                bar.write(f"{experiment}: stopped at iteration {done} after {stop_after_seconds:.0f} s; "
                          f"run the same command again to resume")
                break
    if on_gpu:
        torch.cuda.synchronize(device)  # the last replays are still queued
    loop_seconds = time.monotonic() - started - validation_seconds
    bar.close()
    # with a file, the loop has already snapshotted its last iteration (every run ends on a log boundary)
    final = saves.whole_block
    if final is None:  # no file, or no iteration ran
        final = _snapshot(model, optimizer, reached.state, reached.iteration, loss_history, validation_history,
                          validation_counts, test_history, experiment, hyper, command)
    return TrainResult(model=model, loss_history=loss_history, iteration=final.iteration, checkpoint=final,
                       first_iteration=start, loop_seconds=loop_seconds)


def apply_meta_gradient(model: nn.Module, params: Params, grads: Params, optimizer: torch.optim.Optimizer,
                        clip_grad_value: float | None) -> None:
    """One outer step: the meta-gradient as the parameters' .grad, clipped to ±clip_grad_value if set, then the
    optimiser (benchmarks time this same step)."""
    for name, p in params.items():
        p.grad = grads[name]
    if clip_grad_value is not None:
        torch.nn.utils.clip_grad_value_(model.parameters(), clip_grad_value)
    optimizer.step()


@dataclass
class _Reached:
    iteration: int
    state: Tensor  # the sampling generator's state after that iteration's batch


@dataclass
class _Saves:
    """What an interruption may still write: the state at the last log boundary and the iteration on disk."""
    saved_iteration: int
    whole_block: Checkpoint | None = None


def _gradient_function(objective: Objective, compile: bool) -> Callable[[Params, Any], tuple[Params, Tensor]]:
    """(params, batch) -> (gradients, loss).

    Compiled, the whole meta-gradient is one torch.func graph (about 4x faster
    for the sinusoid MLP), checked against the eager gradient on its first batch
    (``CheckedCompiledGradient``). Eager, plain autograd is faster than torch.func's
    outer grad, by about a quarter for the conv nets. An objective with a
    `gradient(params, batch) -> (grads, loss)` method supplies its own.
    """
    own_gradient = getattr(objective, "gradient", None)
    if own_gradient is not None:  # the objective knows a cheaper way to the same gradient
        eager = own_gradient
    else:
        def eager(params: Params, batch: Any) -> tuple[Params, Tensor]:
            loss = objective(params, batch)
            return dict(zip(params, torch.autograd.grad(loss, list(params.values())))), loss
    return CheckedCompiledGradient(objective, eager) if compile else eager


class CheckedCompiledGradient:
    """torch.compile's gradient, used only once it has matched the eager one on a real batch.

    A compiled form can be fast and silently wrong: with ATEN_CPU_CAPABILITY=avx2 forced on an AVX-512 CPU
    (torch 2.13.0), the compiled gradient of the pretrained baseline's loss came out NaN while the eager one and
    the compiled forward were right; with ATEN_CPU_CAPABILITY=default, inductor's generated C++ did not compile
    (``at::vec`` undeclared). On the first call both run; if the compiled one fails or disagrees, training warns
    once and stays eager (the same numbers, slower)."""

    def __init__(self, objective: Objective, eager: Callable[[Params, Any], tuple[Params, Tensor]],
                 rtol: float = 1e-4) -> None:
        self.compiled = torch.compile(grad_and_value(objective), dynamic=False)
        self.eager, self.rtol = eager, rtol
        self.trusted: bool | None = None  # None until the first batch has been checked

    def __call__(self, params: Params, batch: Any) -> tuple[Params, Tensor]:
        if self.trusted is False:
            return self.eager(params, batch)
        try:
            grads, loss = self.compiled({k: p.detach() for k, p in params.items()}, batch)
        except Exception as error:  # noqa: BLE001 (a compiler that cannot build here must not stop training)
            if self.trusted:
                raise
            self.trusted = False
            warnings.warn(f"torch.compile could not build the meta-gradient here ({type(error).__name__}); training "
                          "continues without compiling (same numbers, slower)", RuntimeWarning, stacklevel=2)
            return self.eager(params, batch)
        if self.trusted is None:
            reference, reference_loss = self.eager(params, batch)
            flat = lambda g: torch.cat([t.detach().flatten() for t in g.values()])  # noqa: E731
            self.trusted = bool(torch.allclose(flat(grads), flat(reference), rtol=self.rtol, atol=1e-6)
                                and torch.allclose(loss, reference_loss, rtol=self.rtol))
            if not self.trusted:
                warnings.warn("torch.compile's meta-gradient does not match the eager one on this machine "
                              f"(loss {loss.item():.6g} against {reference_loss.item():.6g}); training continues "
                              "without compiling (same numbers, slower)", RuntimeWarning, stacklevel=2)
                return reference, reference_loss
        return grads, loss


def _snapshot(model: nn.Module, optimizer: torch.optim.Optimizer, generator_state: Tensor, iteration: int,
              loss_history: list[float], validation_history: list[tuple[int, float]],
              validation_counts: list[int | None], test_history: list[dict[str, Any]], experiment: str,
              hyper: dict[str, Any], command: str | None) -> Checkpoint:
    return Checkpoint(
        experiment=experiment, model_config=model.config(),
        state_dict={k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        iteration=iteration, train_config=hyper, command=command or " ".join(sys.argv),
        loss_history=list(loss_history), validation_history=list(validation_history),
        validation_tasks=list(validation_counts), test_history=list(test_history),
        optimizer_state=copy.deepcopy(optimizer.state_dict()), generator_state=generator_state.clone())


@contextlib.contextmanager
def _save_when_interrupted(saves: _Saves, checkpoint_path: str | Path | None, experiment: str, bar: tqdm):
    """On KeyboardInterrupt, write the last whole block's state if it is newer than the checkpoint, then re-raise."""
    try:
        yield
    except KeyboardInterrupt:
        if checkpoint_path is not None:
            bar.write(f"{experiment}: interrupted; {_save_unsaved_block(saves, checkpoint_path)}")
        bar.close()
        raise


def _save_unsaved_block(saves: _Saves, checkpoint_path: str | Path) -> str:
    """Write the last whole block if the file holds an older one; return where the same command resumes."""
    block = saves.whole_block
    if block is not None and block.iteration > saves.saved_iteration:
        save_checkpoint(block, checkpoint_path)
        return f"saved iteration {block.iteration} to {checkpoint_path}, where the same command resumes"
    if saves.saved_iteration > 0:
        return f"{checkpoint_path} holds iteration {saves.saved_iteration}, where the same command resumes"
    return "no block of iterations had ended; nothing saved"


# How the work is scheduled, not what is computed (vmap and loop give the same gradients: tests check it)
MAY_DIFFER_ON_RESUME = {"n_iterations", "checkpoint_every", "compile", "log_every", "task_batching"}


def _check_same_run(saved: Checkpoint, experiment: str, hyper: dict[str, Any]) -> None:
    """Refuse to resume a checkpoint made with other settings: the result would belong to neither."""
    if saved.experiment != experiment:
        raise ValueError(f"checkpoint is for experiment {saved.experiment!r}, not {experiment!r}")
    # a setting added after the checkpoint was made counts as the same when it has its default value
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
    # a cosine schedule's length is part of what is computed: resuming with another would bend the curve
    may_differ = MAY_DIFFER_ON_RESUME - {"n_iterations"} if hyper.get("cosine_meta_lr") else MAY_DIFFER_ON_RESUME
    differ = {k: (saved.train_config.get(k), v) for k, v in hyper.items()
              if k not in may_differ and saved.train_config.get(k, defaults.get(k)) != v}
    if differ:
        detail = ", ".join(f"{k}: saved {a!r} vs now {b!r}" for k, (a, b) in differ.items())
        raise ValueError(f"cannot resume: the checkpoint was trained with other settings ({detail}); "
                         f"pass resume=False (or another path) to start afresh")
