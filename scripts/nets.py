"""Trusted network builders for lab 06 (training dynamics).

The lab's exercises receive their weights as plain numpy arrays (the grader
forwards only plain data to a submission) and build the PyTorch model inside
the function with these builders; the lab 06 checks build their references
with the same builders, so both sides train exactly the same network.

Conventions
-----------
* ``weights[k]`` has shape ``(n_in, n_out)`` and ``biases[k]`` shape ``(n_out,)``:
  layer k computes ``h @ W + b``, as in labs 01 and 03. (``nn.Linear`` stores
  the transpose; the builders copy ``W.T`` into it.)
* Every layer but the last is a :class:`Block`:
  ``linear -> norm -> act -> dropout``. With ``residual=True`` a block whose
  input and output widths agree adds its input: ``h <- h + block(h)``.
* The last layer, ``head``, is a plain linear read-out.
* ``model.linears`` lists the ``nn.Linear`` layers from input to output.
* Everything is float64 unless a builder says otherwise.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

DT = torch.float64

__all__ = [
    "ACTIVATIONS", "Block", "MLP", "build_mlp", "mlp_weights", "Log", "Exp", "ScaleByStd",
    "FAULT_KINDS", "FaultyNet", "build_faulty_net",
]

#: The activations a :class:`Block` can use, by name.
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "identity": nn.Identity}


def _norm_layer(norm: Optional[str], width: int) -> nn.Module:
    """``None`` -> Identity, ``"layer"`` -> LayerNorm, ``"batch"`` -> BatchNorm1d (both without affine)."""
    if norm is None:
        return nn.Identity()
    if norm == "layer":
        return nn.LayerNorm(width, elementwise_affine=False, dtype=DT)
    if norm == "batch":
        return nn.BatchNorm1d(width, affine=False, dtype=DT)
    raise ValueError(f"norm must be None, 'layer' or 'batch', not {norm!r}")


def _linear(W, b, dtype=DT) -> nn.Linear:
    """An ``nn.Linear`` computing ``h @ W + b`` for ``W`` of shape (n_in, n_out)."""
    W = np.asarray(W, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    layer = nn.Linear(W.shape[0], W.shape[1], dtype=dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(W.T, dtype=dtype))
        layer.bias.copy_(torch.as_tensor(b, dtype=dtype))
    return layer


class Block(nn.Module):
    """One hidden layer: ``linear -> norm -> act -> dropout``, optionally residual.

    Parameters
    ----------
    linear : nn.Linear
    norm : nn.Module
    act : nn.Module
    dropout : float
        Drop probability (``nn.Dropout``; only active in ``model.train()`` mode).
    residual : bool
        Add the block's input to its output (only if the widths agree).
    """

    def __init__(self, linear: nn.Linear, norm: nn.Module, act: nn.Module, dropout: float = 0.0,
                 residual: bool = False):
        super().__init__()
        self.linear, self.norm, self.act = linear, norm, act
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.residual = residual and linear.in_features == linear.out_features

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = self.dropout(self.act(self.norm(self.linear(h))))
        return h + out if self.residual else out


class MLP(nn.Module):
    """A stack of :class:`Block` layers and a linear ``head``.

    Attributes
    ----------
    blocks : nn.ModuleList of Block
    head : nn.Linear
    """

    def __init__(self, blocks: Sequence[Block], head: nn.Linear):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.head = head

    @property
    def linears(self) -> list:
        """The ``nn.Linear`` layers from input to output (``len(weights)`` of them)."""
        return [block.linear for block in self.blocks] + [self.head]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for block in self.blocks:
            h = block(h)
        return self.head(h)


def build_mlp(weights, biases, activation: str = "relu", residual: bool = False, norm: Optional[str] = None,
              dropout: float = 0.0) -> MLP:
    """The lab's MLP with the given weights, in float64.

    Parameters
    ----------
    weights : list of ndarray
        ``weights[k]`` of shape ``(n_k, n_{k+1})``; the last one is the read-out.
    biases : list of ndarray
        ``biases[k]`` of shape ``(n_{k+1},)``.
    activation : {"relu", "tanh", "sigmoid", "identity"}
    residual : bool, default False
        Blocks whose input and output widths agree compute ``h + block(h)``.
    norm : {None, "layer", "batch"}
        Normalisation after each hidden linear layer (no learnable scale or shift).
    dropout : float, default 0.0
        Dropout probability after each hidden activation.

    Returns
    -------
    MLP
        In training mode (``model.train()``), the PyTorch default.

    Examples
    --------
    >>> W = [np.eye(2), np.ones((2, 1))]; b = [np.zeros(2), np.zeros(1)]
    >>> build_mlp(W, b, "relu")(torch.tensor([[1.0, -2.0]], dtype=torch.float64))
    tensor([[1.]], dtype=torch.float64, grad_fn=<AddmmBackward0>)
    """
    if len(weights) != len(biases) or len(weights) < 1:
        raise ValueError("weights and biases must be lists of the same, positive length")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, not {activation!r}")
    blocks = []
    for W, b in zip(weights[:-1], biases[:-1]):
        linear = _linear(W, b)
        blocks.append(Block(linear, _norm_layer(norm, linear.out_features), ACTIVATIONS[activation](),
                            dropout, residual))
    return MLP(blocks, _linear(weights[-1], biases[-1]))


def mlp_weights(sizes: Sequence[int], seed: int, init: str = "he", bias_std: float = 0.0):
    """Seeded weights for :func:`build_mlp` (trusted course code, not an exercise).

    Parameters
    ----------
    sizes : sequence of int
        Layer widths ``(n_0, n_1, ..., n_L)``.
    seed : int
    init : {"he", "xavier", "normal", "zero"} or float
        Weight standard deviation rule: He ``sqrt(2 / n_in)``, Xavier ``sqrt(2 / (n_in + n_out))``,
        unit Gaussian (std 1), all zeros, or a float used as the std itself.
    bias_std : float, default 0.0
        Standard deviation of the biases.

    Returns
    -------
    weights : list of ndarray, ``weights[k]`` of shape ``(sizes[k], sizes[k+1])``
    biases : list of ndarray, ``biases[k]`` of shape ``(sizes[k+1],)``
    """
    rng = np.random.default_rng(seed)
    weights, biases = [], []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        if init == "he":
            std = np.sqrt(2.0 / n_in)
        elif init == "xavier":
            std = np.sqrt(2.0 / (n_in + n_out))
        elif init == "normal":
            std = 1.0
        elif init == "zero":
            std = 0.0
        else:
            std = float(init)
        weights.append(rng.normal(0.0, 1.0, size=(n_in, n_out)) * std)
        biases.append(rng.normal(0.0, 1.0, size=n_out) * bias_std)
    return weights, biases


# ---------------------------------------------------------------------------
# A network with a planted numerical fault (for the NaN/Inf locator)
# ---------------------------------------------------------------------------


class Log(nn.Module):
    """Elementwise natural log: NaN for negative inputs (the planted fault of kind ``"log"``)."""

    def forward(self, x):
        return torch.log(x)


class Exp(nn.Module):
    """Elementwise exp: inf once an input exceeds about 709 in float64 (kind ``"exp"``)."""

    def forward(self, x):
        return torch.exp(x)


class ScaleByStd(nn.Module):
    """Divide each row by its standard deviation without an epsilon: 0 / 0 = NaN for a constant row
    (kind ``"std"``)."""

    def forward(self, x):
        centred = x - x.mean(dim=1, keepdim=True)
        return centred / centred.std(dim=1, keepdim=True)


#: The planted faults, chosen by ``seed % 4``.
FAULT_KINDS = ("log", "exp", "std", "nan-weight")


class FaultyNet(nn.Module):
    """An MLP whose blocks are ``linear -> act``; one block's activation may be a faulty module.

    The read-out ``head`` is registered *before* the blocks, so ``named_modules()`` lists it first
    although it runs last: only the order in which hooks fire tells which module ran first.
    """

    def __init__(self, head: nn.Module, blocks: Sequence[nn.Module]):
        super().__init__()
        self.head = head
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def build_faulty_net(seed: int, fault: Optional[int], n_blocks: int = 6, width: int = 8, n_samples: int = 5):
    """A small float64 network with a numerical fault planted in block ``fault``, and its input.

    Parameters
    ----------
    seed : int
        Chooses the weights, the input and the kind of fault (``FAULT_KINDS[seed % 4]``):
        ``"log"`` replaces the block's activation by ``Log`` (NaN for negative inputs),
        ``"exp"`` by ``Exp`` after a linear layer with weights 1000 times too large (inf),
        ``"std"`` by ``ScaleByStd`` after a linear layer whose weights are all zero (0 / 0 = NaN),
        ``"nan-weight"`` corrupts one weight of the block's linear layer to NaN (as a diverged
        update or a damaged checkpoint would).
    fault : int or None
        Index of the faulty block, ``0 <= fault < n_blocks``; None plants no fault.
    n_blocks, width, n_samples : int
        Number of blocks (each ``nn.Sequential(linear, act)``), their width, and the input's rows.

    Returns
    -------
    model : nn.Module
        Module names look like ``"blocks.2.0"`` (a block's linear layer), ``"blocks.2.1"`` (its
        activation) and ``"head"``.
    x : torch.Tensor of shape (n_samples, width), float64, finite
    """
    if fault is not None and not 0 <= fault < n_blocks:
        raise ValueError(f"fault must be None or in [0, {n_blocks}), not {fault}")
    rng = np.random.default_rng(seed)
    kind = FAULT_KINDS[seed % len(FAULT_KINDS)]
    blocks = []
    for k in range(n_blocks):
        W = rng.normal(0.0, np.sqrt(2.0 / width), size=(width, width))
        b = rng.normal(0.0, 0.1, size=width)
        act: nn.Module = nn.ReLU()
        if k == fault:
            if kind == "log":
                act = Log()
                b = b - 3.0  # every pre-activation negative enough for log to return NaN
            elif kind == "exp":
                act = Exp()
                W = W * 1000.0  # |z| in the hundreds and thousands: exp overflows
                b = b + 1000.0
            elif kind == "std":
                act = ScaleByStd()
                W, b = np.zeros_like(W), np.full_like(b, 0.5)  # constant rows: std = 0
            else:
                W[rng.integers(width), rng.integers(width)] = np.nan
        blocks.append(nn.Sequential(_linear(W, b), act))
    head = _linear(rng.normal(0.0, np.sqrt(1.0 / width), size=(width, 2)), np.zeros(2))
    x = torch.as_tensor(rng.normal(0.0, 1.0, size=(n_samples, width)), dtype=DT)
    model = FaultyNet(head, blocks)
    if (n_blocks, width, n_samples) == (6, 8, 5) and isinstance(seed, int) and (fault is None or isinstance(fault, int)):
        # The call that made them, so the course's grader can build its own copy of this model and
        # input when a student's function passes them on to a function the grader runs (a model
        # cannot be sent as data).
        for item, value in enumerate((model, x)):
            value._made_by = {"module": "nets", "function": "build_faulty_net",
                              "kwargs": {"seed": int(seed), "fault": None if fault is None else int(fault)},
                              "item": item}
    return model, x
