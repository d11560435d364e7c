"""The networks of the paper, each describable by a small config so checkpoints can check them."""
from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch._C._functorch import TransformType
from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters

from .batch_norm import batch_norm


class SinusoidMLP(nn.Module):
    """The paper's regressor: 1-40-40-1 with ReLU.

    `in_features` > 1 serves the oracle, which also sees the amplitude and phase.
    """

    def __init__(self, in_features: int = 1, hidden: tuple[int, ...] = (40, 40)) -> None:
        super().__init__()
        sizes = (in_features, *hidden)
        layers: list[nn.Module] = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], 1))
        self.net = nn.Sequential(*layers)
        self.in_features, self.hidden = in_features, tuple(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., in_features) -> (..., 1)
        return self.net(x)

    def config(self) -> dict[str, Any]:
        return {"name": "SinusoidMLP", "in_features": self.in_features, "hidden": list(self.hidden)}


def inside_vmap() -> bool:
    """Whether this code runs under torch.func.vmap (at any depth of nested transforms)."""
    return any(interpreter.key() == TransformType.Vmap for interpreter in retrieve_all_functorch_interpreters())


class BatchStatsNorm2d(nn.Module):
    """Batch norm that always uses the statistics of the batch it is given, with a learned scale and shift.

    The same as ``nn.BatchNorm2d(track_running_stats=False)``. Outside vmap it
    calls torch's fused kernel, whose derivatives are exact to second order
    and which makes a looped MiniImagenet meta-iteration about 2x faster
    (benchmarks/README.md). Under torch.func.vmap it is written in plain tensor
    ops, because vmap gets the kernel's second derivatives wrong
    (tests/test_conv_meta_gradient.py checks both paths against a plain loop).
    With `double_backward_formulas` the kernel's derivative of its own backward
    (second order) is helpers.batch_norm's closed form instead of torch's
    thirty-odd small ops: on the CPU faster where tensors are large, slower
    where the Python of an autograd Function outweighs that
    (ConvNet.double_backward_formulas); not measured on a GPU, so not used there.
    """

    fused_outside_vmap = True  # benchmarks set it False on an instance to time the plain-ops path everywhere
    double_backward_formulas = False

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, C, H, W)
        if self.fused_outside_vmap and not inside_vmap():
            if self.double_backward_formulas and x.device.type == "cpu":  # measured on the CPU only
                return batch_norm(x, self.weight, self.bias, self.eps)
            return F.batch_norm(x, None, None, self.weight, self.bias, training=True, eps=self.eps)
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight[:, None, None] + self.bias[:, None, None]


class ConvNet(nn.Module):
    """The paper's few-shot classifier: 4 blocks of [3x3 conv, batch norm, ReLU], then a linear layer.

    Omniglot: 64 filters, stride-2 convolutions, no pooling. MiniImagenet: 32
    filters, stride 1 and 2x2 max-pooling (applied before the ReLU, which
    commutes with it). Batch norm always normalises with the
    statistics of the batch it sees (no running averages), at meta-training and
    at meta-test time, as in the reference code; its scale and shift are
    ordinary parameters, adapted in the inner loop like the rest.
    """

    def __init__(self, n_way: int, in_channels: int = 1, hidden: int = 64, image_size: int = 28,
                 downsample: str = "stride") -> None:
        super().__init__()
        if downsample not in ("stride", "maxpool"):
            raise ValueError(f"downsample must be 'stride' or 'maxpool', got {downsample!r}")
        blocks: list[nn.Module] = []
        size, channels = image_size, in_channels
        for _ in range(4):
            stride = 2 if downsample == "stride" else 1
            blocks += [nn.Conv2d(channels, hidden, 3, stride=stride, padding=1), BatchStatsNorm2d(hidden)]
            # ReLU is monotone, so max-pooling before it is the same function with the same gradients, and
            # ReLU then touches a quarter of the values (no parameters move: checkpoints load either way)
            blocks += [nn.MaxPool2d(2), nn.ReLU()] if downsample == "maxpool" else [nn.ReLU()]
            size = (size + 1) // 2 if downsample == "stride" else size // 2
            channels = hidden
        self.features = nn.Sequential(*blocks, nn.Flatten())
        self.classifier = nn.Linear(hidden * size * size, n_way)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        # Channels-last activations on the CPU, outside vmap (which cannot carry a memory format). Measured
        # (benchmarks/README.md): the MiniImagenet net's first-order meta-iterations and evaluation run 1.6-2x faster
        # in it; Omniglot's 28x28 grey images gain nothing (evaluation within 10%, training 0-6% slower), so stay NCHW;
        # and with torch's batch-norm double backward, second order is 1.5x slower channels-last (Mini 5-shot):
        # experiments.fewshot_model chooses per net and order. Not part of config(): it changes speed, not the function.
        self.channels_last = downsample == "maxpool"
        self._config = {"name": "ConvNet", "n_way": n_way, "in_channels": in_channels, "hidden": hidden,
                        "image_size": image_size, "downsample": downsample}

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, C, H, W) -> (batch, n_way) logits
        if self.channels_last and x.device.type == "cpu" and not inside_vmap():
            x = x.contiguous(memory_format=torch.channels_last)
        return self.classifier(self.features(x))

    @property
    def double_backward_formulas(self) -> bool:
        """Whether batch norm differentiates its backward by helpers.batch_norm's formulas (every layer alike).

        Not part of config(): it changes speed, not the function (experiments.fewshot_model sets it)."""
        return all(m.double_backward_formulas for m in self.modules() if isinstance(m, BatchStatsNorm2d))

    @double_backward_formulas.setter
    def double_backward_formulas(self, on: bool) -> None:
        for module in self.modules():
            if isinstance(module, BatchStatsNorm2d):
                module.double_backward_formulas = on

    def config(self) -> dict[str, Any]:
        return dict(self._config)


def as_the_paper_writes_it(model: ConvNet) -> ConvNet:
    """A copy of `model` with none of the fast paths: [conv, batch norm in plain tensor ops, ReLU, max-pool] in
    NCHW, as the paper and its reference code write the net. Same parameter names, so it runs on the same `params`:
    the tests' reference and the benchmarks' baseline (the eager path before channels-last and the fused kernel)."""
    plain = copy.deepcopy(model)
    plain.channels_last = False
    blocks = list(plain.features)
    for index, module in enumerate(blocks):
        if isinstance(module, BatchStatsNorm2d):
            module.fused_outside_vmap = False
        if isinstance(module, nn.MaxPool2d) and isinstance(blocks[index + 1], nn.ReLU):
            blocks[index], blocks[index + 1] = blocks[index + 1], blocks[index]
    plain.features = nn.Sequential(*blocks)
    return plain


class MetaLearner(nn.Module):
    """A model and the inner-loop learning rates that Meta-SGD and MAML++ meta-train beside its weights.

    `rate_shapes[name]` is the shape of parameter `name`'s learned rates, with a
    leading step axis (helpers.maml.step_rate): (1, *weight shape) for Meta-SGD,
    (steps,) for MAML++. All start at `init_lr`. Its parameters are named
    ``model.<name>`` and ``rates.<name with / for .>``; `split` undoes that.

    The rates are stored in units of `init_lr` (a stored 1.0 is a rate of
    `init_lr`). Adam moves every parameter by about its learning rate per
    iteration whatever the parameter's size, so rates of 0.01 learnt directly
    with a meta learning rate of 1e-3 change by a tenth of themselves per
    iteration: on the sinusoid, MAML++'s rates turned negative within 50
    iterations and its training diverged at iteration 385 (measured). In units
    of `init_lr` a rate moves by about init_lr · meta_lr per iteration instead.
    """

    def __init__(self, model: nn.Module | dict[str, Any], rate_shapes: dict[str, list[int]], init_lr: float) -> None:
        super().__init__()
        self.model = model if isinstance(model, nn.Module) else build_model(model)
        names = dict(self.model.named_parameters())
        unknown = sorted(set(rate_shapes) - set(names))
        if unknown:
            raise ValueError(f"rate_shapes names parameters the model lacks: {unknown}")
        dtype = next(self.model.parameters()).dtype  # a float64 model gets float64 rates
        self.rates = nn.ParameterDict({name.replace(".", "/"): nn.Parameter(torch.ones(tuple(shape), dtype=dtype))
                                       for name, shape in rate_shapes.items()})
        self.init_lr = float(init_lr)
        self._config = {"name": "MetaLearner", "model": self.model.config(),
                        "rate_shapes": {name: list(shape) for name, shape in rate_shapes.items()},
                        "init_lr": float(init_lr)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def split(self, params: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
        """(the model's parameters, the learned rates or None) from this learner's `params`, by the model's names.

        The rates come back as step sizes (stored value x init_lr), still differentiable.
        """
        weights = {k.removeprefix("model."): v for k, v in params.items() if k.startswith("model.")}
        rates = {k.removeprefix("rates.").replace("/", "."): self.init_lr * v
                 for k, v in params.items() if k.startswith("rates.")}
        return weights, rates or None

    def config(self) -> dict[str, Any]:
        return dict(self._config)


MODELS: dict[str, type[nn.Module]] = {"SinusoidMLP": SinusoidMLP, "ConvNet": ConvNet, "MetaLearner": MetaLearner}


def build_model(config: dict[str, Any]) -> nn.Module:
    """Rebuild a model from the config that its `config()` returned."""
    kwargs = dict(config)
    name = kwargs.pop("name", None)
    if name not in MODELS:
        raise ValueError(f"unknown model name {name!r} in config; known: {sorted(MODELS)}")
    if isinstance(kwargs.get("hidden"), list):
        kwargs["hidden"] = tuple(kwargs["hidden"])
    return MODELS[name](**kwargs)
