"""Direct Feedback Alignment for any ``torch.nn.Module``, with the feedback computed by a speckle
projector.

The shape is TinyDFA's: put a :class:`DFALayer` after each hidden block, wrap the network's output
in a :class:`DFA` that knows those layers, and train as usual::

    import torch.nn as nn
    import torch.nn.functional as F
    from speckle.torch import DFA, DFALayer

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(784, 800), nn.Linear(800, 800)
            self.out = nn.Linear(800, 10)
            self.dfa1, self.dfa2 = DFALayer(), DFALayer()
            self.dfa = DFA([self.dfa1, self.dfa2], projector="sim")  # or an object with project(e)

        def forward(self, x):
            x = self.dfa1(torch.tanh(self.fc1(x)))
            x = self.dfa2(torch.tanh(self.fc2(x)))
            return self.dfa(self.out(x))

    loss = F.cross_entropy(net(x), y)
    loss.backward()      # hidden layers get DFA signals, the output layer its true gradient
    optimizer.step()

The rule is the one ``speckle train`` implements (the seed paper's code, Launay et al. 2019):

* e = dL/d(output), per sample. With ``batch_sum=True`` (default) the incoming gradient is
  multiplied by the batch size, which gives e = softmax − onehot for a cross-entropy averaged
  over the batch, **not** divided by the batch size: hidden updates are sums over the batch.
  ``batch_sum=False`` uses the incoming gradient as is (TinyDFA's convention).
* B·e of the whole batch is **one** ``projector.project`` call per backward pass
  (batch × classes → batch × width), rescaled by 1/sqrt(entry_variance) to unit-variance entries.
* Shared feedback (default): every feedback point reads the **first d_i columns** of the one
  projection, d_i = the number of values per sample at that point (a convolutional output of shape
  C × H × W is flattened, d_i = C·H·W, and the slice is reshaped back). Points of equal size get the
  identical signal. ``per_layer=True``: layer i reads its own slice at offset Σ_{j<i} d_j (the
  order of the list given to :class:`DFA`).
* With ``normalization=True`` (default) the slice of layer i is divided by sqrt(classes·d_i), i.e.
  entries N(0, 1/(C·d_i)).
* The signal replaces the gradient at the **output** of the hidden block (after its activation,
  batch norm, dropout, pooling: wherever the :class:`DFALayer` sits) and flows back only through the
  block's own operations into its parameters; nothing is propagated to the block below (the
  tensor a :class:`DFALayer` hands on is detached, so no backward product is wasted on it).
* Layers between the last :class:`DFALayer` and the :class:`DFA` wrapper get their true gradient.

The projector is any object with ``project(e)`` taking a C-contiguous float32 numpy array
(batch × input_dim) and returning a float32 array (batch × output_dim ≥ the feedback width). An
``info`` attribute (object or dict) with ``entry_variance``, ``input_dim`` and ``output_dim`` is
used when present. A projector with ``project_torch(tensor) -> tensor`` is called with tensors
instead (no host round trip): :class:`DigitalProjector` does that. A SPEC string (``"sim"``,
``"digital"``, ``"serial:/dev/ttyUSB0"``, ...) opens ``speckle.open_projector(spec, classes,
width, seed=..., encoding=..., overrides=...)`` from the native module at the first forward pass;
the SPEC ``"torch"`` opens a :class:`DigitalProjector` instead and needs no native module.

:func:`alignment` measures, like ``speckle train``, the per-sample cosine between the DFA signal
and the true backprop gradient at each feedback point, mean ± population std over the batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "DFA",
    "DFALayer",
    "DigitalProjector",
    "LayerAlignment",
    "alignment",
    "open_projector",
]

# The SPEC that selects DigitalProjector (no native module needed).
TORCH_SPEC = "torch"


class DigitalProjector:
    """The ideal digital Gaussian projector in PyTorch: a fixed (input_dim × output_dim) matrix of
    N(0, 1) entries drawn from a ``torch.Generator`` seeded with ``seed``; ``project(e) = e · B``.

    It serves both interfaces: ``project`` (numpy in, numpy out, as a native projector) and
    ``project_torch`` (tensors, on the tensor's device, used by :class:`DFA` to skip the host
    round trip). Its matrix is not speckle's ``digital`` projector's (a different generator).
    """

    def __init__(self, input_dim: int, output_dim: int, seed: int = 0,
                 dtype: torch.dtype = torch.float32):
        if input_dim < 1 or output_dim < 1:
            raise ValueError(
                f"DigitalProjector: dimensions {input_dim} × {output_dim} must be ≥ 1")
        gen = torch.Generator().manual_seed(int(seed))
        self.matrix = torch.randn(input_dim, output_dim, generator=gen, dtype=dtype)
        self.seed = int(seed)
        self._cache: Dict[Tuple[torch.device, torch.dtype], torch.Tensor] = {}
        self.projections = 0
        self.vectors = 0

    @property
    def info(self) -> Dict[str, Any]:
        return {
            "kind": "torch-digital",
            "identity": f"torch-digital:seed={self.seed}",
            "input_dim": self.matrix.shape[0],
            "output_dim": self.matrix.shape[1],
            "entry_variance": 1.0,
        }

    def _matrix(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        key = (device, dtype)
        m = self._cache.get(key)
        if m is None:
            m = self.matrix.to(device=device, dtype=dtype)
            self._cache[key] = m
        return m

    def project_torch(self, e: torch.Tensor) -> torch.Tensor:
        self._check(e.shape)
        self.projections += 1
        self.vectors += e.shape[0]
        return e @ self._matrix(e.device, e.dtype)

    def project(self, e: np.ndarray) -> np.ndarray:
        e = np.asarray(e)
        if e.dtype != np.float32:
            raise TypeError(f"DigitalProjector.project: expected float32, got {e.dtype}")
        out = self.project_torch(torch.from_numpy(np.ascontiguousarray(e)))
        return out.numpy()

    def _check(self, shape) -> None:
        if len(shape) != 2 or shape[1] != self.matrix.shape[0]:
            raise ValueError(
                f"DigitalProjector: input of shape {tuple(shape)}, expected "
                f"(batch, {self.matrix.shape[0]})")

    def __repr__(self) -> str:
        return (f"DigitalProjector({self.matrix.shape[0]}, {self.matrix.shape[1]}, "
                f"seed={self.seed})")


def open_projector(spec: str, input_dim: int, output_dim: int, seed: int = 0,
                   encoding: str = "ternary", overrides: Any = None):
    """Opens a projector from a SPEC: ``"torch"`` gives a :class:`DigitalProjector`; anything else
    goes to the native ``speckle.open_projector`` (imported only now)."""
    if spec == TORCH_SPEC:
        if overrides:
            raise ValueError("projector 'torch' takes no device overrides")
        return DigitalProjector(input_dim, output_dim, seed=seed)
    try:
        import speckle as native  # the package this module belongs to
        open_native = native.open_projector
    except (ImportError, AttributeError) as err:
        raise ImportError(
            f"projector SPEC {spec!r} needs speckle's native module (speckle.open_projector), "
            f"which is not available ({err}); build it with maturin, or pass a projector object "
            f"or the SPEC {TORCH_SPEC!r}") from err
    return open_native(spec, input_dim, output_dim, seed=seed, encoding=encoding,
                       overrides=overrides)


def _info_field(projector: Any, name: str) -> Optional[Any]:
    info = getattr(projector, "info", None)
    if callable(info):
        info = info()
    if info is None:
        return None
    if isinstance(info, dict):
        return info.get(name)
    return getattr(info, name, None)


def _width(shape: Sequence[int]) -> int:
    return int(math.prod(shape[1:]))


class DFALayer(nn.Module):
    """Marks the output of a hidden block as a DFA feedback point. The identity in the forward pass;
    in DFA training its gradient is the DFA signal instead of the backprop gradient, and the tensor
    it hands on is detached (nothing is propagated past it). Attach it to a :class:`DFA`."""

    def __init__(self, name: Optional[str] = None):
        super().__init__()
        self.name = name
        # A plain reference (not a submodule: the DFA wrapper lives in the same module tree).
        self.__dict__["_dfa"] = None
        self.__dict__["_dfa_index"] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dfa = self.__dict__["_dfa"]
        if dfa is None:
            raise RuntimeError("DFALayer is not attached: pass it to speckle.torch.DFA([...])")
        return dfa._visit(self, x)

    def extra_repr(self) -> str:
        return f"name={self.name!r}" if self.name else ""


class _DFAFunction(torch.autograd.Function):
    """Identity on the network output; its inputs also include every hidden feedback point of the
    pass, so that autograd reaches them from the loss and its backward hands each one its DFA
    signal."""

    @staticmethod
    def forward(ctx, dfa: "DFA", layers: Tuple["DFALayer", ...], output: torch.Tensor,
                *hidden: torch.Tensor) -> torch.Tensor:
        ctx.dfa = dfa
        ctx.layers = layers
        ctx.shapes = [h.shape for h in hidden]
        return output.clone()

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        needs = ctx.needs_input_grad[3:]
        points = [(layer, shape) for layer, shape, need in zip(ctx.layers, ctx.shapes, needs)
                  if need]
        signals = iter(ctx.dfa.feedback(grad_output, points) if points else [])
        hidden_grads = [next(signals) if need else None for need in needs]
        return (None, None, grad_output, *hidden_grads)


class DFA(nn.Module):
    """DFA wrapper of a network's output: ``output = dfa(model_output)``.

    Args:
        dfa_layers: the :class:`DFALayer` modules of the network (order sets the per-layer
            offsets; with the shared matrix it does not matter).
        projector: an object with ``project(e)`` (see the module doc), or a SPEC string opened at
            the first forward pass with ``input_dim`` = values per sample of the output and
            ``output_dim`` = the feedback width. Default ``"sim"``, as ``speckle train``.
        seed: the projector's seed (SPEC only).
        encoding: error encoding of an optical projector (SPEC only), with its device frames
            per vector: ``ternary``, ``ternary:T``, ``ternary:dither`` (4), ``bitplane:P``
            (4P), ``levels:K``, ``levels:K:dither`` (2(K-1)); ``levels:3:dither`` is what
            ``speckle train`` uses.
        overrides: device overrides passed to ``speckle.open_projector`` (SPEC only).
        normalization: divide layer i's slice by sqrt(classes·d_i) (the seed rule's default).
        per_layer: independent slices (offset Σ_{j<i} d_j) instead of one shared matrix.
        batch_sum: multiply the incoming output gradient by the batch size (per-sample error, the
            seed rule, exact for a batch-averaged loss); False: use it as is.
        no_training: pass-through (plain backprop through the whole network).
    """

    def __init__(self, dfa_layers: Sequence[DFALayer], projector: Any = "sim", *, seed: int = 0,
                 encoding: str = "ternary", overrides: Any = None, normalization: bool = True,
                 per_layer: bool = False, batch_sum: bool = True, no_training: bool = False):
        super().__init__()
        layers = list(dfa_layers)
        if not all(isinstance(l, DFALayer) for l in layers):
            raise TypeError("DFA expects a list of DFALayer modules")
        if len(set(map(id, layers))) != len(layers):
            raise ValueError("DFA: a DFALayer is listed twice")
        for i, layer in enumerate(layers):
            if layer.__dict__["_dfa"] is not None and layer.__dict__["_dfa"] is not self:
                raise ValueError("DFALayer is already attached to another DFA")
            # Kept on the layer (not keyed by id) so that copy.deepcopy of a model keeps working.
            layer.__dict__["_dfa"] = self
            layer.__dict__["_dfa_index"] = i
        # Plain list (not ModuleList): the layers belong to the user's module tree already.
        self.__dict__["dfa_layers"] = layers
        self.spec = projector if isinstance(projector, str) else None
        self._projector = None if isinstance(projector, str) else projector
        if self._projector is not None and not (hasattr(projector, "project")
                                                or hasattr(projector, "project_torch")):
            raise TypeError("DFA: the projector needs a project(e) method (or a SPEC string)")
        self.seed = seed
        self.encoding = encoding
        self.overrides = overrides
        self.normalization = normalization
        self.per_layer = per_layer
        self.batch_sum = batch_sum
        self.no_training = no_training
        self._widths: List[Optional[int]] = [None] * len(layers)
        self._checked = False
        self._pending: List[Tuple[DFALayer, torch.Tensor]] = []
        self._capture: Optional[List[Tuple[DFALayer, torch.Tensor]]] = None
        #: projection calls and projected vectors of this wrapper
        self.projections = 0
        self.vectors = 0

    # -- forward ------------------------------------------------------------------------------
    def _visit(self, layer: DFALayer, x: torch.Tensor) -> torch.Tensor:
        i = layer.__dict__["_dfa_index"]
        w = _width(x.shape)
        if self._widths[i] != w:
            if self._widths[i] is not None and self.per_layer:
                raise ValueError(
                    f"DFA: feedback point {i} changed size ({self._widths[i]} → {w}), which "
                    "per-layer offsets do not allow")
            self._widths[i] = w
            self._checked = False
        if self._capture is not None:
            if not x.requires_grad:
                # A frozen block: make its output a leaf so that the gradient there is measured.
                x = x.detach().requires_grad_(True)
            self._capture.append((layer, x))
            return x
        if self.no_training or not (torch.is_grad_enabled() and x.requires_grad):
            return x
        self._pending.append((layer, x))
        return x.detach()

    def forward(self, output: torch.Tensor) -> torch.Tensor:
        pending, self._pending = self._pending, []
        if self._capture is not None or self.no_training or not pending:
            return output
        n = output.shape[0]
        for layer, x in pending:
            if x.shape[0] != n:
                raise RuntimeError(
                    f"DFA: a feedback point of batch {x.shape[0]} meets an output of batch {n}: "
                    "every forward pass through DFALayers must end in the DFA wrapper")
        self._ensure_projector(output)
        layers = tuple(layer for layer, _ in pending)
        return _DFAFunction.apply(self, layers, output, *[x for _, x in pending])

    # -- feedback -----------------------------------------------------------------------------
    @property
    def feedback_width(self) -> int:
        """Projector outputs the rule needs: the widest point (shared) or the sum (per layer)."""
        widths = [w for w in self._widths if w is not None]
        if not widths:
            return 0
        return sum(widths) if self.per_layer else max(widths)

    @property
    def projector(self):
        """The projector (opened at the first forward pass when given as a SPEC)."""
        return self._projector

    def _ensure_projector(self, output: torch.Tensor) -> None:
        if self._checked and self._projector is not None:
            return
        if self.per_layer and any(w is None for w in self._widths):
            missing = [i for i, w in enumerate(self._widths) if w is None]
            raise RuntimeError(
                f"DFA(per_layer=True): feedback points {missing} were not visited in the first "
                "forward pass, so their offsets are unknown")
        if self._projector is None:
            self._projector = open_projector(self.spec, _width(output.shape), self.feedback_width,
                                             seed=self.seed, encoding=self.encoding,
                                             overrides=self.overrides)
        classes = _width(output.shape)
        p_in = _info_field(self._projector, "input_dim")
        if p_in is not None and int(p_in) != classes:
            raise ValueError(
                f"DFA: the projector takes {p_in} inputs but the output has {classes} values per "
                "sample")
        p_out = _info_field(self._projector, "output_dim")
        if p_out is not None and int(p_out) < self.feedback_width:
            raise ValueError(
                f"DFA: the projector has {p_out} outputs but the feedback needs "
                f"{self.feedback_width} ({'the sum of' if self.per_layer else 'the widest of'} "
                "the feedback points)")
        self._checked = True

    def _unit(self) -> float:
        v = _info_field(self._projector, "entry_variance")
        if v is None:
            return 1.0
        v = float(v)
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"DFA: the projector reports entry variance {v}")
        return 1.0 / math.sqrt(v)

    def project(self, e: torch.Tensor) -> torch.Tensor:
        """B·e of a batch (batch × values) through the projector: one call, result on e's device
        and dtype."""
        p = self._projector
        n = e.shape[0]
        if hasattr(p, "project_torch"):
            y = p.project_torch(e)
        else:
            arr = e.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy()
            out = np.asarray(p.project(arr))
            if out.dtype != np.float32:
                out = out.astype(np.float32)
            y = torch.from_numpy(np.ascontiguousarray(out))
            if y.device != e.device or y.dtype != e.dtype:
                y = y.to(device=e.device, dtype=e.dtype)
        if y.dim() != 2 or y.shape[0] != n or y.shape[1] < self.feedback_width:
            raise ValueError(
                f"DFA: the projector returned shape {tuple(y.shape)} for {n} vectors; the feedback "
                f"needs (n, ≥{self.feedback_width})")
        self.projections += 1
        self.vectors += n
        return y

    def feedback(self, grad_output: torch.Tensor,
                 points: Sequence[Tuple[DFALayer, torch.Size]]) -> List[torch.Tensor]:
        """The DFA signals at ``points`` ((layer, shape) pairs) for the output gradient
        ``grad_output``: one projection of the batch, sliced, scaled and reshaped per point."""
        if self._projector is None:
            raise RuntimeError("DFA: no projector yet (run a forward pass first)")
        n = grad_output.shape[0]
        e = grad_output.reshape(n, -1)
        classes = e.shape[1]
        if self.batch_sum:
            e = e * n
        proj = self.project(e)
        unit = self._unit()
        cache: Dict[Tuple[int, int], torch.Tensor] = {}
        signals = []
        for layer, shape in points:
            d = _width(shape)
            off = 0
            if self.per_layer:
                off = sum(self._widths[:layer.__dict__["_dfa_index"]])
            key = (off, d)
            s = cache.get(key)
            if s is None:
                scale = unit / math.sqrt(classes * d) if self.normalization else unit
                s = proj[:, off:off + d] * scale
                cache[key] = s
            signals.append(s.reshape(shape))
        return signals

    def extra_repr(self) -> str:
        p = self.spec if self.spec is not None else type(self._projector).__name__
        return (f"layers={len(self.dfa_layers)}, projector={p!r}, normalization="
                f"{self.normalization}, per_layer={self.per_layer}, batch_sum={self.batch_sum}, "
                f"no_training={self.no_training}")


@dataclass
class LayerAlignment:
    """Alignment at one feedback point: per-sample cosine between the DFA signal and the true
    backprop gradient, mean and population standard deviation over the batch."""

    index: int
    name: Optional[str]
    width: int
    cosine_mean: float
    cosine_std: float

    def as_dict(self) -> Dict[str, Any]:
        return {"index": self.index, "name": self.name, "width": self.width,
                "cosine_mean": self.cosine_mean, "cosine_std": self.cosine_std}


def _row_cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a = a.reshape(a.shape[0], -1).double()
    b = b.reshape(b.shape[0], -1).double()
    na, nb = a.norm(dim=1), b.norm(dim=1)
    dot = (a * b).sum(dim=1)
    denom = na * nb
    # A zero vector has cosine 0 with anything (as speckle's trainer).
    return torch.where(denom > 0, dot / denom.clamp_min(1e-300), torch.zeros_like(dot))


def alignment(model: nn.Module, dfa: DFA, x: torch.Tensor, target: torch.Tensor,
              loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
              ) -> List[LayerAlignment]:
    """Per feedback point, the per-sample cosine between the DFA signal and the true backprop
    gradient on the batch ``(x, target)``, as ``speckle train`` measures it: the model in eval mode
    (no dropout, running batch-norm statistics), one backprop pass with DFA disabled for the true
    gradients at every :class:`DFALayer` output and the output error e, then B·e through the
    projector (one projection of the batch) sliced and scaled as in training. Parameters and
    their ``.grad`` are left untouched. Points are in forward order."""
    was_training = model.training
    model.eval()
    capture: List[Tuple[DFALayer, torch.Tensor]] = []
    dfa._capture = capture
    try:
        with torch.enable_grad():
            output = model(x)
            if not capture:
                raise RuntimeError("alignment: the forward pass visited no DFALayer of this DFA")
            if not output.requires_grad:
                raise RuntimeError("alignment: the output does not depend on the feedback points")
            loss = loss_fn(output, target)
            grads = torch.autograd.grad(loss, [output] + [h for _, h in capture],
                                        allow_unused=True)
            grads = [torch.zeros_like(h) if g is None else g
                     for g, h in zip(grads, [output] + [h for _, h in capture])]
    finally:
        dfa._capture = None
        dfa._pending = []
        model.train(was_training)
    if dfa.projector is None:
        dfa._ensure_projector(output)
    points = [(layer, h.shape) for layer, h in capture]
    with torch.no_grad():
        signals = dfa.feedback(grads[0], points)
    result = []
    for (layer, h), bp, sig in zip(capture, grads[1:], signals):
        cos = _row_cosines(sig, bp)
        result.append(LayerAlignment(
            index=layer.__dict__["_dfa_index"],
            name=layer.name,
            width=_width(h.shape),
            cosine_mean=float(cos.mean()),
            cosine_std=float(cos.std(unbiased=False)) if cos.numel() > 1 else 0.0,
        ))
    return result
