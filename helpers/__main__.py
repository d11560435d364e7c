"""Command line: `python -m helpers train NAME` trains an experiment and writes its checkpoint.

    python -m helpers list
    python -m helpers train sinusoid_maml            # the paper's schedule -> data/checkpoints/sinusoid_maml.pt
    python -m helpers train sinusoid_maml --iterations 2000 --out /tmp/short.pt
    python -m helpers train omniglot_20way_5shot --minutes 30   # a time budget; run it again to go on
    python -m helpers train omniglot_20way_5shot --until 2000   # stop at iteration 2000; the schedule stays the paper's
    python -m helpers evaluate omniglot_5way_1shot     # (re)compute a checkpoint's test metrics, e.g. mid-training
    python -m helpers results --update-readme          # the README's Table 1 rows, from the checkpoints
    python -m helpers results --update-docs            # the validation and test-score tables in docs/*.md
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from .checkpoints import load_checkpoint, save_checkpoint
from .device import default_device, machine_name
from .experiments import EXPERIMENTS, get_experiment
from .metrics import experiment_metrics
from .train import train


def leg_record(first_iteration: int, seconds_per_iteration: float, device: torch.device) -> dict[str, Any]:
    """How a training leg ran, kept with the scoring that ends it, so that the docs can quote its speed and
    machine from the checkpoint rather than from memory."""
    return {"from_iteration": first_iteration, "ms_per_iteration": round(1e3 * seconds_per_iteration, 1),
            "device": device.type, "machine": machine_name(device), "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the experiments")
    run = commands.add_parser("train", help="train an experiment (resumes from its checkpoint)")
    run.add_argument("experiment", choices=sorted(EXPERIMENTS))
    run.add_argument("--iterations", type=int,
                     help="the schedule's length (default: the paper's); to stop early, use --until or --minutes")
    run.add_argument("--until", type=int, metavar="ITERATION",
                     help="stop at this iteration with a checkpoint, the schedule unchanged; the same command "
                          "with a larger ITERATION goes on")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--out", type=Path, help="checkpoint path (default: data/checkpoints/NAME.pt)")
    run.add_argument("--device", help="cpu, cuda, mps (default: the best available)")
    run.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint and start again")
    run.add_argument("--no-compile", action="store_true", help="skip torch.compile (slower, starts at once)")
    run.add_argument("--checkpoint-every", type=int)
    run.add_argument("--minutes", type=float,
                     help="stop after about this many minutes with a checkpoint; the same command resumes "
                          "(then it scores the test tasks: up to about 20 minutes more for a few-shot cell on "
                          "a 2-core CPU)")
    score = commands.add_parser("evaluate", help="compute a checkpoint's test metrics and store them in it")
    score.add_argument("experiment", choices=sorted(EXPERIMENTS))
    score.add_argument("--checkpoint", type=Path, help="default: data/checkpoints/NAME.pt")
    score.add_argument("--device", help="cpu, cuda, mps (default: the best available)")
    score.add_argument("--tasks", type=int, default=600,
                       help="test tasks (default 600, as the paper; fewer are the first of the same tasks)")
    tables = commands.add_parser("results", help="print the Table 1 rows from the checkpoints' stored scores")
    tables.add_argument("--update-readme", action="store_true", help="rewrite them in README.md")
    tables.add_argument("--update-docs", action="store_true",
                        help="rewrite each cell's validation and test-score tables in docs/*.md, between their "
                             "markers")
    args = parser.parse_args(argv)

    if args.command == "results":
        from .results import main as results
        return results(update_readme=args.update_readme, update_docs=args.update_docs)
    if args.command == "list":
        for name in sorted(EXPERIMENTS):
            print(f"{name:24s} {get_experiment(name).description}")
        return 0

    experiment = get_experiment(args.experiment)
    if args.command == "evaluate":
        path = args.checkpoint or experiment.checkpoint_path
        checkpoint = load_checkpoint(path, expected_model_config=experiment.make_model().config())
        device = default_device(args.device)
        started = time.perf_counter()
        scores = experiment_metrics(experiment.name, checkpoint.build_model().to(device), args.tasks,
                                    progress=True)
        print(f"scored on {device} in {time.perf_counter() - started:.1f} s")
        checkpoint.record_scores({**checkpoint.metrics, **scores})
        save_checkpoint(checkpoint, path)
        print(f"{experiment.name} after {checkpoint.iteration} iterations -> {path}")
        for key, value in checkpoint.metrics.items():
            print(f"  {key}: {value}")
        return 0

    config = replace(experiment.train_config, seed=args.seed,
                     n_iterations=args.iterations or experiment.train_config.n_iterations,
                     compile=experiment.train_config.compile and not args.no_compile,
                     checkpoint_every=args.checkpoint_every or experiment.train_config.checkpoint_every)
    out = args.out or experiment.checkpoint_path
    command = "python -m helpers " + shlex.join(argv if argv is not None else sys.argv[1:])
    model = experiment.new_model(args.seed)
    started = time.perf_counter()
    try:
        result = train(model, experiment.make_objective(model), experiment.make_sampler(), config,
                       experiment=experiment.name, objective_config=experiment.objective_config,
                       checkpoint_path=out, resume=not args.fresh, device=args.device, command=command,
                       validate=experiment.make_validator() if experiment.make_validator else None,
                       validate_every=experiment.validate_every, validation_tasks=experiment.validation_tasks,
                       stop_after_seconds=None if args.minutes is None else 60 * args.minutes,
                       stop_at_iteration=args.until)
    except KeyboardInterrupt:  # train has saved what it could and said where; the scores wait for `evaluate`
        if Path(out).exists():
            print(f"not scored: `python -m helpers evaluate {experiment.name}` scores the saved checkpoint")
        return 130
    seconds = time.perf_counter() - started
    ran = result.iteration - result.first_iteration
    if ran:
        print(f"{experiment.name}: iterations {result.first_iteration}-{result.iteration} on "
              f"{next(result.model.parameters()).device} "
              f"took {1e3 * result.loop_seconds / ran:.1f} ms each (validation excluded)")
    checkpoint = result.checkpoint
    leg = {"leg": leg_record(result.first_iteration, result.loop_seconds / ran,
                             next(result.model.parameters()).device)} if ran else {}
    checkpoint.record_scores({**experiment_metrics(experiment.name, result.model, progress=True),
                              "train_seconds_this_run": round(seconds, 1), **leg})
    save_checkpoint(checkpoint, out)
    print(f"{experiment.name}: {result.iteration} iterations, {seconds:.1f} s this run -> {out}")
    for key, value in checkpoint.metrics.items():
        print(f"  {key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
