"""Notebook 03, exercise 3: 200 meta-iterations of Omniglot 5-way 1-shot, second and first order, same seed and
episodes; prints the two loss histories and their seconds as JSON (stored in data/results/omniglot_first_vs_second_order.json):

    OMNIGLOT_DIR=/path/to/omniglot OMP_NUM_THREADS=1 python tools/omniglot_first_vs_second_order.py \
        > data/results/omniglot_first_vs_second_order.json
"""
import json
import sys
import tempfile
import time
from dataclasses import fields, replace
from pathlib import Path
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import helpers  # noqa: E402
from helpers.experiments import MAMLSettings, get_experiment, maml_objective  # noqa: E402

ITERATIONS = 200  # what exercise 3 asks
experiment = get_experiment("omniglot_5way_1shot")
settings = MAMLSettings(**{f.name: experiment.objective_config[f.name] for f in fields(MAMLSettings)})
config = replace(experiment.train_config, n_iterations=ITERATIONS, log_every=5, checkpoint_every=ITERATIONS)
runs = {}
for name, first_order in (("second order", False), ("first order", True)):
    model = experiment.new_model(0)  # same seed, and train() draws the same episodes from config.seed
    objective = maml_objective(model, replace(settings, first_order=first_order), loss_fn=F.cross_entropy)
    start = time.perf_counter()
    result = helpers.train.train(model, objective, experiment.make_sampler(), config, experiment="exercise 3",
                                 objective_config={}, checkpoint_path=Path(tempfile.mkdtemp()) / "run.pt",
                                 resume=False, progress=False, device="cpu")
    runs[name] = {"seconds": round(time.perf_counter() - start, 1),
                  "loss_history": [round(float(x), 4) for x in result.loss_history]}
print(json.dumps({"iterations": ITERATIONS, "log_every": 5, "torch_threads": torch.get_num_threads(),
                  "torch": torch.__version__, "runs": runs}))
