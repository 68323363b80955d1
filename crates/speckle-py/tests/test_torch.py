"""Tests of speckle.torch (DFA for torch.nn.Module) and of the Python examples at tiny size.

They need PyTorch (marked ``torch``, skipped without it) but not speckle's native module: the
projectors are pure-Python objects with ``project(e)`` or speckle.torch.DigitalProjector.
"""

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import speckle  # noqa: E402
from speckle.torch import DFA, DFALayer, DigitalProjector, alignment  # noqa: E402

pytestmark = pytest.mark.torch

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples" / "python"
MNIST = REPO / "data" / "mnist"


@pytest.fixture(autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(min(old, 2))
    yield
    torch.set_num_threads(old)


class MatrixProjector:
    """project(e) = e · M (numpy), recording every call."""

    def __init__(self, matrix, entry_variance=None):
        self.matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        self.calls = []
        self._var = entry_variance

    @property
    def info(self):
        d = {"input_dim": self.matrix.shape[0], "output_dim": self.matrix.shape[1]}
        if self._var is not None:
            d["entry_variance"] = self._var
        return d

    def project(self, e):
        assert isinstance(e, np.ndarray) and e.dtype == np.float32 and e.ndim == 2
        assert e.flags["C_CONTIGUOUS"]
        self.calls.append(e.copy())
        return e @ self.matrix


class OneHidden(nn.Module):
    def __init__(self, projector, d_in=7, d_h=5, classes=3, **kw):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d_in, d_h), nn.Linear(d_h, classes)
        self.p1 = DFALayer()
        self.dfa = DFA([self.p1], projector, **kw)

    def forward(self, x):
        return self.dfa(self.fc2(self.p1(torch.tanh(self.fc1(x)))))


class TwoHidden(nn.Module):
    def __init__(self, projector, widths=(6, 4), d_in=5, classes=3, **kw):
        super().__init__()
        self.fc1 = nn.Linear(d_in, widths[0])
        self.fc2 = nn.Linear(widths[0], widths[1])
        self.out = nn.Linear(widths[1], classes)
        self.p1, self.p2 = DFALayer("a"), DFALayer("b")
        self.dfa = DFA([self.p1, self.p2], projector, **kw)
        self.h = []

    def forward(self, x):
        h1 = torch.tanh(self.fc1(x))
        h2 = torch.tanh(self.fc2(self.p1(h1)))
        self.h = [h1, h2]
        return self.dfa(self.out(self.p2(h2)))


def grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def backprop_grads(model, x, y):
    model.zero_grad(set_to_none=True)
    model.dfa.no_training = True
    try:
        F.cross_entropy(model(x), y).backward()
    finally:
        model.dfa.no_training = False
    return grads(model)


def dfa_grads(model, x, y):
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    return grads(model)


def data(n=8, d_in=7, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d_in, generator=g), torch.randint(0, classes, (n,), generator=g)


# -- the rule ---------------------------------------------------------------------------------
def test_bp_matrix_as_projector_gives_the_backprop_update():
    torch.manual_seed(0)
    model = OneHidden(None or DigitalProjector(3, 5), normalization=False, batch_sum=False)
    # The true backprop matrix: ∂L/∂h = (∂L/∂z) · W2, W2 of torch shape (classes × hidden).
    model.dfa._projector = MatrixProjector(model.fc2.weight.detach().numpy())
    x, y = data()
    bp = backprop_grads(model, x, y)
    dfa = dfa_grads(model, x, y)
    assert set(bp) == set(dfa) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    for k in bp:
        torch.testing.assert_close(dfa[k], bp[k], rtol=1e-5, atol=1e-7)
    assert len(model.dfa.projector.calls) == 1


def test_default_rule_is_batch_sum_with_feedback_normalization():
    """Seed rule: e not divided by the batch, slice scaled by 1/sqrt(C·d): with the BP matrix the
    hidden update is n/sqrt(C·d) times backprop's, and the output layer's is its true gradient."""
    torch.manual_seed(1)
    n, d, c = 8, 5, 3
    model = OneHidden(DigitalProjector(c, d))
    model.dfa._projector = MatrixProjector(model.fc2.weight.detach().numpy())
    x, y = data(n)
    bp = backprop_grads(model, x, y)
    dfa = dfa_grads(model, x, y)
    k = n / math.sqrt(c * d)
    for name in ("fc1.weight", "fc1.bias"):
        torch.testing.assert_close(dfa[name], k * bp[name], rtol=1e-5, atol=1e-6)
    for name in ("fc2.weight", "fc2.bias"):
        torch.testing.assert_close(dfa[name], bp[name], rtol=1e-6, atol=1e-7)


def test_shared_matrix_sliced_scaled_and_injected_after_the_activation():
    """The Rust trainer's rule written out by hand: one projection of the batch, rescaled to unit
    entry variance, first d_i columns, / sqrt(C·d_i), times tanh', summed over the batch."""
    torch.manual_seed(2)
    c, widths, n = 3, (6, 4), 10
    rng = np.random.default_rng(0)
    var = 4.0
    proj = MatrixProjector(rng.normal(0, 2.0, (c, 9)), entry_variance=var)  # wider than needed
    model = TwoHidden(proj, widths)
    x, y = data(n, 5, c)
    g = dfa_grads(model, x, y)
    assert len(proj.calls) == 1 and proj.calls[0].shape == (n, c)
    with torch.no_grad():
        h1, h2 = model.h
        logits = model.out(h2)
        e = torch.softmax(logits, 1) - F.one_hot(y, c).float()
        np.testing.assert_allclose(proj.calls[0], e.numpy(), rtol=1e-5, atol=1e-6)
        p = torch.from_numpy(proj.calls[0] @ proj.matrix) / math.sqrt(var)
        d1 = p[:, :6] / math.sqrt(c * 6) * (1 - h1 ** 2)
        d2 = p[:, :4] / math.sqrt(c * 4) * (1 - h2 ** 2)
        want = {
            "fc1.weight": d1.T @ x, "fc1.bias": d1.sum(0),
            "fc2.weight": d2.T @ h1, "fc2.bias": d2.sum(0),
            "out.weight": (e / n).T @ h2, "out.bias": (e / n).sum(0),
        }
    for k, v in want.items():
        torch.testing.assert_close(g[k], v, rtol=1e-5, atol=1e-6)


def capture_point_grads(model, x, y):
    """The gradients the hidden outputs receive (what each DFALayer hands back)."""
    seen = {}
    hooks = []

    def keep(i):
        def hook(mod, args, out):
            args[0].register_hook(lambda g: seen.__setitem__(i, g.clone()))
        return hook

    for i, p in enumerate([model.p1, model.p2]):
        hooks.append(p.register_forward_hook(keep(i)))
    try:
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()
    finally:
        for h in hooks:
            h.remove()
    return seen


def test_equal_widths_get_the_identical_signal_and_per_layer_gets_its_own_slice():
    torch.manual_seed(3)
    c, n = 3, 6
    m = np.random.default_rng(1).normal(size=(c, 8))
    model = TwoHidden(MatrixProjector(m), (4, 4), normalization=False)
    x, y = data(n, 5, c)
    s = capture_point_grads(model, x, y)
    torch.testing.assert_close(s[0], s[1])
    e = torch.from_numpy(model.dfa.projector.calls[-1])
    torch.testing.assert_close(s[0], e @ torch.from_numpy(m[:, :4]).float(), rtol=1e-5, atol=1e-6)

    model2 = TwoHidden(MatrixProjector(m), (4, 4), normalization=False, per_layer=True)
    model2.load_state_dict(model.state_dict())
    s2 = capture_point_grads(model2, x, y)
    e = torch.from_numpy(model2.dfa.projector.calls[-1])
    mm = torch.from_numpy(m).float()
    torch.testing.assert_close(s2[0], e @ mm[:, :4], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(s2[1], e @ mm[:, 4:8], rtol=1e-5, atol=1e-6)
    assert model2.dfa.feedback_width == 8 and model.dfa.feedback_width == 4


def test_nothing_is_propagated_past_a_feedback_point():
    torch.manual_seed(4)
    model = TwoHidden(DigitalProjector(3, 6))
    flags = []
    model.fc2.register_forward_hook(lambda mod, args, out: flags.append(args[0].requires_grad))
    model.out.register_forward_hook(lambda mod, args, out: flags.append(args[0].requires_grad))
    x, y = data(4, 5, 3)
    dfa_grads(model, x, y)
    assert flags == [False, False]
    flags.clear()
    backprop_grads(model, x, y)
    assert flags == [True, True]


def test_hidden_updates_do_not_depend_on_the_downstream_weights():
    """For a given output error the first layer's DFA update involves no layer above it."""
    torch.manual_seed(5)
    model = TwoHidden(DigitalProjector(3, 6, seed=9))
    x, _ = data(8, 5, 3)
    g_out = torch.randn(8, 3)
    model.zero_grad()
    model(x).backward(g_out)
    before = {k: v.clone() for k, v in grads(model).items()}
    with torch.no_grad():
        model.fc2.weight.mul_(3.0)
        model.out.weight.mul_(-2.0)
    model.zero_grad()
    model(x).backward(g_out)
    after = grads(model)
    torch.testing.assert_close(after["fc1.weight"], before["fc1.weight"])
    torch.testing.assert_close(after["fc1.bias"], before["fc1.bias"])
    assert not torch.allclose(after["fc2.weight"], before["fc2.weight"])


def test_convolutional_feedback_point_is_flattened_and_reshaped():
    torch.manual_seed(6)
    c, n = 4, 5

    class Conv(nn.Module):
        def __init__(self, projector):
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 3, padding=1)
            self.fc = nn.Linear(3 * 4 * 4, 8)
            self.out = nn.Linear(8, c)
            self.p1, self.p2 = DFALayer(), DFALayer()
            self.dfa = DFA([self.p1, self.p2], projector)

        def forward(self, x):
            self.h1 = torch.relu(self.conv(x))
            self.h1.retain_grad()
            h = self.p1(self.h1)
            self.h2 = torch.tanh(self.fc(h.flatten(1)))
            return self.dfa(self.out(self.p2(self.h2)))

    m = np.random.default_rng(2).normal(size=(c, 48))
    model = Conv(MatrixProjector(m))
    x = torch.randn(n, 2, 4, 4)
    y = torch.randint(0, c, (n,))
    F.cross_entropy(model(x), y).backward()
    assert model.dfa.feedback_width == 48
    e = torch.from_numpy(model.dfa.projector.calls[0])
    want = (e @ torch.from_numpy(m).float() / math.sqrt(c * 48)).reshape(n, 3, 4, 4)
    torch.testing.assert_close(model.h1.grad, want, rtol=1e-5, atol=1e-6)
    # The conv weights get exactly what autograd gives for that signal at the conv block output.
    ref = nn.Conv2d(2, 3, 3, padding=1)
    ref.load_state_dict(model.conv.state_dict())
    torch.relu(ref(x)).backward(want)
    torch.testing.assert_close(model.conv.weight.grad, ref.weight.grad, rtol=1e-5, atol=1e-6)


def test_no_training_is_plain_backprop_and_eval_records_nothing():
    torch.manual_seed(7)
    model = TwoHidden(DigitalProjector(3, 6), no_training=True)
    ref = TwoHidden(DigitalProjector(3, 6))
    ref.load_state_dict(model.state_dict())
    x, y = data(8, 5, 3)
    g = dfa_grads(model, x, y)
    # The reference: the same layers with autograd only.
    ref.zero_grad()
    h = torch.tanh(ref.fc2(torch.tanh(ref.fc1(x))))
    F.cross_entropy(ref.out(h), y).backward()
    for k, v in grads(ref).items():
        torch.testing.assert_close(g[k], v)
    assert model.dfa.projections == 0
    with torch.no_grad():
        ref(x)
    assert ref.dfa._pending == [] and ref.dfa.projections == 0


def test_a_deep_copy_trains_on_its_own():
    import copy

    torch.manual_seed(15)
    model = TwoHidden(DigitalProjector(3, 6))
    x, y = data(8, 5, 3)
    g = dfa_grads(model, x, y)
    model.h = []  # the test model keeps its activations (non-leaf tensors)
    twin = copy.deepcopy(model)
    assert twin.p1._dfa is twin.dfa and twin.dfa.dfa_layers == [twin.p1, twin.p2]
    twin_g = dfa_grads(twin, x, y)
    for k in g:
        torch.testing.assert_close(twin_g[k], g[k])
    assert twin.dfa.projections == 2 and model.dfa.projections == 1


def test_batch_mismatch_is_an_error():
    torch.manual_seed(8)
    model = TwoHidden(DigitalProjector(3, 6))
    x, _ = data(4, 5, 3)
    model.p1(torch.tanh(model.fc1(x)))  # a forward pass abandoned before the DFA wrapper
    with pytest.raises(RuntimeError, match="batch"):
        model(torch.randn(6, 5))


def test_float64_model_and_numpy_projector():
    torch.manual_seed(9)
    model = OneHidden(DigitalProjector(3, 5), normalization=False, batch_sum=False).double()
    model.dfa._projector = MatrixProjector(model.fc2.weight.detach().numpy())
    x, y = data()
    x = x.double()
    bp = backprop_grads(model, x, y)
    dfa = dfa_grads(model, x, y)
    for k in bp:
        assert dfa[k].dtype == torch.float64
        torch.testing.assert_close(dfa[k], bp[k], rtol=1e-5, atol=1e-7)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_model_with_host_projector():
    torch.manual_seed(10)
    model = OneHidden(DigitalProjector(3, 5), normalization=False, batch_sum=False).cuda()
    model.dfa._projector = MatrixProjector(model.fc2.weight.detach().cpu().numpy())
    x, y = data()
    x, y = x.cuda(), y.cuda()
    bp = backprop_grads(model, x, y)
    dfa = dfa_grads(model, x, y)
    for k in bp:
        assert dfa[k].is_cuda
        torch.testing.assert_close(dfa[k], bp[k], rtol=1e-4, atol=1e-6)


# -- projectors -------------------------------------------------------------------------------
def test_digital_projector_interfaces_agree_and_are_seeded():
    p = DigitalProjector(10, 32, seed=5)
    e = np.random.default_rng(0).normal(size=(4, 10)).astype(np.float32)
    a = p.project(e)
    b = p.project_torch(torch.from_numpy(e)).numpy()
    assert a.dtype == np.float32 and a.shape == (4, 32)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    np.testing.assert_array_equal(a, DigitalProjector(10, 32, seed=5).project(e))
    assert not np.allclose(a, DigitalProjector(10, 32, seed=6).project(e))
    assert p.info["entry_variance"] == 1.0 and p.info["output_dim"] == 32
    assert p.projections == 2 and p.vectors == 8
    with pytest.raises(ValueError):
        p.project(np.zeros((4, 9), np.float32))


def test_spec_string_opens_the_native_projector_lazily(monkeypatch):
    opened = []

    def fake_open(spec, input_dim, output_dim, seed=0, encoding="ternary", overrides=None):
        opened.append((spec, input_dim, output_dim, seed, encoding, overrides))
        return DigitalProjector(input_dim, output_dim, seed=seed)

    monkeypatch.setattr(speckle, "open_projector", fake_open, raising=False)
    torch.manual_seed(11)
    model = TwoHidden("sim", (6, 4), seed=3, encoding="bitplane:2",
                      overrides=["camera.bits=12"])
    assert opened == [] and model.dfa.projector is None
    x, y = data(4, 5, 3)
    F.cross_entropy(model(x), y).backward()
    assert opened == [("sim", 3, 6, 3, "bitplane:2", ["camera.bits=12"])]
    F.cross_entropy(model(x), y).backward()
    assert len(opened) == 1 and model.dfa.projections == 2


def test_spec_without_the_native_module_says_so(monkeypatch):
    monkeypatch.delattr(speckle, "open_projector", raising=False)
    model = TwoHidden("sim")
    x, y = data(4, 5, 3)
    with pytest.raises(ImportError, match="native module"):
        model(x)
    # The pure-PyTorch SPEC needs nothing.
    model = TwoHidden("torch")
    F.cross_entropy(model(x), y).backward()
    assert isinstance(model.dfa.projector, DigitalProjector)


def test_projector_too_narrow_or_wrong_input_is_an_error():
    x, y = data(4, 5, 3)
    with pytest.raises(ValueError, match="outputs"):
        TwoHidden(DigitalProjector(3, 5))(x)
    with pytest.raises(ValueError, match="inputs"):
        TwoHidden(DigitalProjector(4, 6))(x)

    class Bare:  # no info: the returned shape is checked
        def project(self, e):
            return np.zeros((e.shape[0], 5), np.float32)

    with pytest.raises(ValueError, match="returned shape"):
        F.cross_entropy(TwoHidden(Bare())(x), y).backward()


# -- alignment --------------------------------------------------------------------------------
def test_alignment_is_the_per_sample_cosine_with_backprop():
    torch.manual_seed(12)
    model = OneHidden(DigitalProjector(3, 5))
    x, y = data(16)
    # With the backprop matrix as the projector the DFA signal is parallel to the BP gradient.
    model.dfa._projector = MatrixProjector(model.fc2.weight.detach().numpy())
    (a,) = alignment(model, model.dfa, x, y)
    assert abs(a.cosine_mean - 1) < 1e-6 and a.cosine_std < 1e-6 and a.width == 5

    # A random projector: compare with the cosines computed by hand.
    m = np.random.default_rng(3).normal(size=(3, 5))
    model.dfa._projector = MatrixProjector(m)
    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    (a,) = alignment(model, model.dfa, x, y)
    assert model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters()))
    with torch.no_grad():
        h = torch.tanh(model.fc1(x))
        e = torch.softmax(model.fc2(h), 1) - F.one_hot(y, 3).float()
        bp = (e / 16) @ model.fc2.weight
        sig = e @ torch.from_numpy(m).float()
        cos = F.cosine_similarity(bp.double(), sig.double(), dim=1)
    assert a.cosine_mean == pytest.approx(float(cos.mean()), abs=1e-6)
    assert a.cosine_std == pytest.approx(float(cos.std(unbiased=False)), abs=1e-6)


def test_alignment_in_eval_mode_and_forward_order():
    torch.manual_seed(13)

    class Drop(TwoHidden):
        def forward(self, x):
            return super().forward(F.dropout(x, 0.5, self.training))

    model = Drop(DigitalProjector(3, 6))
    x, y = data(32, 5, 3)
    a1 = alignment(model, model.dfa, x, y)
    a2 = alignment(model, model.dfa, x, y)
    assert [a.name for a in a1] == ["a", "b"] and [a.width for a in a1] == [6, 4]
    assert [a.cosine_mean for a in a1] == [a.cosine_mean for a in a2]  # no dropout: repeatable
    assert all(-1 <= a.cosine_mean <= 1 for a in a1)


def test_alignment_of_a_frozen_block():
    """A block whose parameters are frozen gets no DFA signal in training, but its alignment is
    still measured (the gradient at its output exists)."""
    torch.manual_seed(14)
    model = TwoHidden(DigitalProjector(3, 6))
    for p in model.fc1.parameters():
        p.requires_grad_(False)
    x, y = data(8, 5, 3)
    F.cross_entropy(model(x), y).backward()
    assert model.fc1.weight.grad is None and model.fc2.weight.grad is not None
    a = alignment(model, model.dfa, x, y)
    assert [p.name for p in a] == ["a", "b"] and all(-1 <= p.cosine_mean <= 1 for p in a)
    assert a[0].cosine_std > 0


# -- the examples at tiny size ----------------------------------------------------------------
def load_example(name):
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


needs_mnist = pytest.mark.skipif(not (MNIST / "train-images-idx3-ubyte.gz").exists(),
                                 reason="MNIST not in data/mnist")


@needs_mnist
def test_mnist_example_runs_at_tiny_size(capsys):
    mod = load_example("mnist_dfa")
    mod.main(["--projector", "torch", "--epochs", "2", "--train-subset", "1024",
              "--test-subset", "256", "--hidden", "64,64,64", "--lr", "1e-2", "--threads", "1",
              "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["epochs"] == 2 and out["train_samples"] == 1024 and out["test_samples"] == 256
    assert 0.2 < out["test_accuracy"] <= 1.0  # above chance after 16 steps of 128
    assert [a["width"] for a in out["alignment"]] == [64, 64, 64]
    assert all(-1 <= a["cosine_mean"] <= 1 for a in out["alignment"])
    assert out["projections"] == 2 * (8 + 1)  # 8 training steps and one alignment per epoch


@needs_mnist
def test_mnist_example_data_match_speckle_train_preprocessing():
    mod = load_example("mnist_dfa")
    x, y, xt, yt = mod.load_mnist(MNIST, 1000, 100)
    assert x.shape == (1000, 784) and xt.shape == (100, 784) and x.dtype == torch.float32
    assert abs(float(x.double().mean())) < 1e-5 and abs(float(x.double().std()) - 1) < 1e-3
    assert int(y.min()) >= 0 and int(y.max()) <= 9 and y.dtype == torch.int64


@needs_mnist
def test_mnist_example_training_equals_the_plain_dfa_step():
    """speckle.torch with the torch projector trains exactly as the example's plain PyTorch DFA."""
    mod = load_example("mnist_dfa")
    torch.manual_seed(0)
    x, y, _, _ = mod.load_mnist(MNIST, 384, 10)
    sizes = [784, 32, 32, 10]
    torch.manual_seed(0)
    a = mod.MLP(sizes, DigitalProjector(10, 32))
    torch.manual_seed(0)
    b = mod.MLP(sizes, "torch")
    plain = mod.PlainDFA(b, DigitalProjector(10, 32).matrix)
    oa, sa = mod.make_optimizer(a, 5e-4, 3)
    ob, sb = mod.make_optimizer(b, 5e-4, 3)
    order = torch.arange(384)
    mod.train_epoch(a, oa, sa, x, y, 128, order)
    for s in range(0, 384, 128):
        plain.step(x[s:s + 128], y[s:s + 128], ob)
        sb.step()
    for (k, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=k)


@needs_mnist
def test_mnist_bench_runs_at_tiny_size(capsys):
    mod = load_example("mnist_dfa")
    mod.main(["--projector", "torch", "--bench", "1", "--train-subset", "256",
              "--hidden", "32,32,32", "--threads", "1", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert set(out["median_seconds"]) == {"speckle.torch, projector torch",
                                          "speckle.torch, projector torch via project(numpy)",
                                          "plain PyTorch DFA"}
    assert out["ratio_to_plain"]["plain PyTorch DFA"] == 1.0


@needs_mnist
def test_cnn_example_runs_at_tiny_size(capsys):
    mod = load_example("cnn_dfa")
    mod.main(["--projector", "torch", "--epochs", "1", "--train-subset", "256",
              "--test-subset", "128", "--threads", "1", "--algorithm", "bp,dfa,dfa-frozen-conv",
              "--json"])
    out = json.loads(capsys.readouterr().out)
    assert list(out["runs"]) == ["bp", "dfa", "dfa-frozen-conv"]
    for run in out["runs"].values():
        assert [a["name"] for a in run["alignment"]] == ["conv1", "conv2", "fc"]
        assert [a["width"] for a in run["alignment"]] == [3136, 1568, 256]
        assert 0.0 <= run["test_accuracy"] <= 1.0
