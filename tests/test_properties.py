"""Property-based tests of every normaliser and implementation over shapes, padding, dtypes and score scales.

Hypothesis draws each problem: batch and heads 1-8, n 1-64 (m = n for the self-attention operators, m free for
softmax), head dims 1-128, token padding (none, a single valid token, all but one valid, random), float64 /
float32 / bfloat16 / float16 inputs and a score scale (the standard deviation of ``S = q k^T / sqrt(d)``) from
1e-3 to 1e4. In float16 the scale stops at 1e3: beyond it the raw products ``q . k`` (before ``1 / sqrt(d)``)
leave float16's range, so no operator could be asked for finite scores. The properties:

* every output is finite; padded queries get a zero output and zero gradient, padded keys zero gradient;
  masked pairs get exactly zero mass; rows sum to 1 after a row step, at every scale;
* flash = lean = unrolled Sinkhorn, fused ASAP = dense ASAP, SDPA softmax = the dense softmax, each against a
  float64 reference computed from the same rounded inputs, for scales <= 10 (at sharper scales a rounding of
  ``S`` flips which key wins, so only finiteness, masks and row sums are checked there);
* in float64 at scales <= 10: Sinkhorn's dual objective never decreases over its half-steps, and its column
  error after T = 50 iterations is <= 1e-6; ASAP fed the teacher's exact dual reproduces the teacher.

The CI profile (``tests/conftest.py``) is derandomised and bounded; ``HYPOTHESIS_PROFILE=long`` runs more,
random examples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
from hypothesis import event, given
from hypothesis import strategies as st

from asap import ops
from asap.ops.masking import pair_mask

DTYPES = (torch.float64, torch.float32, torch.bfloat16, torch.float16)
MAX_LOG10_SCALE = {torch.float16: 3.0}  # else 4: see the module docstring
SMOOTH_SCALE = 10.0  # up to here implementations are compared; beyond, only finiteness, masks and row sums
# agreement of an implementation in the input dtype with the float64 reference, relative to max |v|
TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-4, torch.bfloat16: 6e-2, torch.float16: 1e-2}
PADDINGS = ("none", "one valid", "one padded", "random")


@dataclass
class Problem:
    q: torch.Tensor  # (B, H, n, d)
    k: torch.Tensor  # (B, H, m, d)
    v: torch.Tensor  # (B, H, m, e)
    token_mask: torch.Tensor | None  # (B, 1, m): True = real token
    scale: float

    @property
    def dtype(self) -> torch.dtype:
        return self.q.dtype

    @property
    def smooth(self) -> bool:
        return self.scale <= SMOOTH_SCALE

    @property
    def largest_score(self) -> float:
        return ops.attention_scores(self.q.double(), self.k.double()).abs().max().item()

    def as_float64(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.q.double(), self.k.double(), self.v.double()


def pairs(token_mask: torch.Tensor | None) -> torch.Tensor | None:
    """The pair mask ``(B, 1, n, n)`` of real queries and real keys, from the key-padding mask ``(B, 1, 1, n)``."""
    return None if token_mask is None else pair_mask(token_mask.unsqueeze(-2))


def padding_mask(kind: str, batch: int, n: int, generator: torch.Generator) -> torch.Tensor | None:
    """``(B, 1, n)`` booleans of real tokens, at random positions, each problem at least one real token."""
    if kind == "none" or (kind == "one padded" and n == 1):
        return None
    mask = torch.zeros(batch, n, dtype=torch.bool)
    picks = torch.randint(0, n, (batch,), generator=generator)
    if kind == "one valid":
        mask[torch.arange(batch), picks] = True
    elif kind == "one padded":
        mask[:] = True
        mask[torch.arange(batch), picks] = False
    else:
        mask = torch.rand(batch, n, generator=generator) < 0.5
        mask[torch.arange(batch), picks] = True
    return mask.unsqueeze(1)


@st.composite
def problems(
    draw: st.DrawFn,
    square: bool = True,
    dtypes: tuple[torch.dtype, ...] = DTYPES,
    max_n: int = 64,
    max_scale: float = 1e4,
) -> Problem:
    dtype = draw(st.sampled_from(dtypes))
    batch, heads = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    n = draw(st.integers(1, max_n))
    m = n if square else draw(st.integers(1, max_n))
    head_dim, value_dim = draw(st.integers(1, 128)), draw(st.integers(1, 16))
    scale = 10.0 ** draw(st.floats(-3.0, min(MAX_LOG10_SCALE.get(dtype, 4.0), math.log10(max_scale))))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    # S = q . k / sqrt(d) has standard deviation `scale` when q and k have sqrt(scale) per entry
    q = torch.randn(batch, heads, n, head_dim, generator=generator, dtype=torch.float64) * math.sqrt(scale)
    k = torch.randn(batch, heads, m, head_dim, generator=generator, dtype=torch.float64) * math.sqrt(scale)
    v = torch.randn(batch, heads, m, value_dim, generator=generator, dtype=torch.float64)
    mask = padding_mask(draw(st.sampled_from(PADDINGS)), batch, m, generator)
    return Problem(q.to(dtype), k.to(dtype), v.to(dtype), mask, scale)


def assert_finite(name: str, tensor: torch.Tensor) -> None:
    assert torch.isfinite(tensor).all(), f"{name}: {(~torch.isfinite(tensor)).sum().item()} non-finite entries"


def assert_close_to(name: str, out: torch.Tensor, reference: torch.Tensor, problem: Problem) -> None:
    error = (out.double() - reference).abs().max().item() / max(problem.v.double().abs().max().item(), 1e-12)
    assert error <= TOLERANCE[problem.dtype], f"{name}: relative error {error:.2e} > {TOLERANCE[problem.dtype]:.0e}"


def assert_padding_respected(out: torch.Tensor, token_mask: torch.Tensor | None) -> None:
    """Padded queries get an output of exactly zero."""
    if token_mask is not None:
        padded = ~token_mask.expand(out.shape[:-1])
        assert (out[padded] == 0).all(), "a padded query has a non-zero output"


def row_sum_tolerance(dtype: torch.dtype, largest_score: float, row_length: int) -> float:
    """What rounding allows a row of ``exp(S + f + g)`` summing to 1: the output's rounding (half a unit per
    entry, relative), the sum's (``m`` units of the working precision) and the exponent's (``S + f + g`` in at
    least float32 is exact to ``eps |S|``, a relative error of ``exp``)."""
    work = torch.finfo(torch.promote_types(dtype, torch.float32)).eps
    return torch.finfo(dtype).eps + work * (row_length + 8 * max(1.0, largest_score))


def assert_rows_and_masks(matrix: torch.Tensor, token_mask: torch.Tensor | None, largest_score: float) -> None:
    """Masked pairs carry exactly zero mass and every real query's row sums to 1."""
    assert_finite("attention matrix", matrix)
    assert (matrix >= 0).all(), "negative attention weight"
    if token_mask is not None:
        real = pairs(token_mask).expand(matrix.shape)
        assert (matrix[~real] == 0).all(), "a masked pair has mass"
    rows = matrix.double().sum(-1)
    valid_rows = torch.ones_like(rows, dtype=torch.bool) if token_mask is None else token_mask.expand(rows.shape)
    error = (rows[valid_rows] - 1).abs().max().item()
    tolerance = row_sum_tolerance(matrix.dtype, largest_score, matrix.shape[-1])
    assert error <= tolerance, f"row sums off by {error:.2e} > {tolerance:.1e}"


def gradients(fn, problem: Problem) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of a random linear function of ``fn(q, k, v)``'s output with respect to ``q, k, v``."""
    leaves = [t.detach().clone().requires_grad_() for t in (problem.q, problem.k, problem.v)]
    out = fn(*leaves)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    return torch.autograd.grad((out * weights).sum(), leaves)


def assert_gradients_respect_padding(grads: tuple[torch.Tensor, ...], token_mask: torch.Tensor | None) -> None:
    for name, grad in zip("qkv", grads, strict=True):
        assert_finite(f"gradient of {name}", grad)
        if token_mask is not None:
            padded = ~token_mask.expand(grad.shape[:-1])
            assert (grad[padded] == 0).all(), f"a padded token's {name} has a non-zero gradient"


@pytest.mark.parametrize("impl", ["flash", "lean", "unrolled"])
@given(problem=problems(), n_iters=st.sampled_from([0, 1, 3]))
def test_sinkhorn_implementations(impl, problem, n_iters):
    out = ops.sinkhorn_attention(problem.q, problem.k, problem.v, n_iters, problem.token_mask, impl=impl)
    assert out.dtype == problem.dtype
    assert_finite(f"{impl} output", out)
    assert_padding_respected(out, problem.token_mask)
    if problem.smooth:
        q, k, v = problem.as_float64()
        reference = ops.sinkhorn_attention(q, k, v, n_iters, problem.token_mask, impl="unrolled")
        assert_close_to(impl, out, reference, problem)
    if problem.dtype in (torch.float32, torch.float64):
        grads = gradients(lambda q, k, v: ops.sinkhorn_attention(q, k, v, n_iters, problem.token_mask, impl), problem)
        assert_gradients_respect_padding(grads, problem.token_mask)


@given(problem=problems(), n_iters=st.sampled_from([0, 1, 3, 10]))
def test_sinkhorn_matrices_mask_and_normalise_rows(problem, n_iters):
    real_pairs = pairs(problem.token_mask)
    unrolled = ops.sinkhorn_attention_matrix(problem.q, problem.k, n_iters, real_pairs)
    lean = ops.lean_sinkhorn_attention_matrix(ops.attention_scores(problem.q, problem.k), n_iters, real_pairs)
    for matrix in (unrolled, lean):
        assert_rows_and_masks(matrix, problem.token_mask, problem.largest_score)


def birkhoff_contraction(scores: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per problem, ``Delta = max (S_ij - S_kj) - (S_il - S_kl)`` over real tokens and ``tanh(Delta / 4)^2``, the
    factor by which each Sinkhorn iteration at least shrinks the Hilbert-metric distance to the fixed point
    (Birkhoff; Franklin & Lorenz 1989, Linear Algebra Appl. 114/115)."""
    lowest = torch.finfo(scores.dtype).min / 4
    pairs = valid.unsqueeze(-1) & valid.unsqueeze(-2)
    gaps = scores.unsqueeze(-2) - scores.unsqueeze(-3)  # (..., i, k, j): S_ij - S_kj
    real = pairs.unsqueeze(-1) & valid.unsqueeze(-2).unsqueeze(-2)
    widest = gaps.masked_fill(~real, lowest).amax(-1) - gaps.masked_fill(~real, -lowest).amin(-1)
    delta = widest.masked_fill(~pairs, 0.0).amax((-1, -2))
    return delta, torch.tanh(delta / 4) ** 2


@given(problem=problems(dtypes=(torch.float64,), max_n=32, max_scale=SMOOTH_SCALE))
def test_sinkhorn_ascends_its_dual_and_converges_where_its_contraction_says(problem):
    """Sinkhorn is block-coordinate ascent on the dual ``<a, f> + <b, g> - sum_ij exp(S_ij + f_i + g_j)``, and
    converges linearly at a rate set by the scores' range: after T = 50 iterations the column error is <= 1e-6
    wherever the Birkhoff contraction guarantees it (``lambda^50 Delta <= 1e-8``). At scale 10 a 2 x 2 problem
    can have ``Delta = 50``, ``lambda = 1 - 4e-11``: there no bound holds, and 50 iterations leave 3e-4."""
    scores = ops.attention_scores(problem.q, problem.k)
    real_pairs = None if problem.token_mask is None else pairs(problem.token_mask).expand(scores.shape)
    valid = torch.ones(scores.shape[:-1], dtype=torch.bool) if real_pairs is None else real_pairs.any(-1)
    counts = valid.sum(-1, keepdim=True).double()

    def objective(f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        plan = ops.transport_plan(scores, f, g, real_pairs)
        return ((f * valid).sum(-1) + (g * valid).sum(-1)) / counts.squeeze(-1) - plan.sum((-1, -2))

    values = []
    for n_iters in range(6):
        f, g = ops.sinkhorn(scores, n_iters, real_pairs)
        values.append(objective(f, g))
    for before, after in zip(values, values[1:], strict=False):
        assert (after >= before - 1e-10 * before.abs().clamp_min(1)).all(), "the dual objective decreased"
    delta, contraction = birkhoff_contraction(scores, valid)
    guaranteed = contraction**50 * delta.clamp_min(1) <= 1e-8
    column_error = (ops.sinkhorn_attention_matrix(problem.q, problem.k, 50, real_pairs).sum(-2) - 1) * valid
    event(f"convergence guaranteed for {guaranteed.float().mean().item():.0%} of the problems")
    worst = column_error.abs().amax(-1)[guaranteed]
    assert (worst <= 1e-6).all(), f"column error {worst.max().item():.2e} after 50 iterations where it is guaranteed"


@pytest.mark.parametrize("two_sided", [True, False])
@given(problem=problems(), num_slices=st.integers(1, 16), lse_impl=st.sampled_from(["blocked", "kernel"]))
def test_asap_fused_equals_dense_and_stays_finite(two_sided, problem, num_slices, lse_impl):
    """ASAP end to end from its sliced features through a random linear map to the query dual, its column step
    by either log-sum-exp pass."""
    head_dim = problem.q.shape[-1]
    directions = ops.slice_directions(head_dim, num_slices, seed=0).expand(problem.q.shape[1], -1, -1)
    features = ops.dual_features(problem.q, problem.k, directions, problem.token_mask)
    assert_finite("features", features)
    weights = torch.randn(features.shape[-1], generator=torch.Generator().manual_seed(2), dtype=features.dtype)
    f = features @ weights * 0.3
    out = ops.fused_c_transform_attention(problem.q, problem.k, problem.v, f, problem.token_mask, two_sided, lse_impl)
    assert out.dtype == problem.dtype
    assert_finite("fused ASAP", out)
    assert_padding_respected(out, problem.token_mask)
    matrix = ops.c_transform_attention_matrix(problem.q, problem.k, f, pairs(problem.token_mask), two_sided)
    if two_sided:
        assert_rows_and_masks(matrix, problem.token_mask, problem.largest_score)
    if problem.smooth:
        q, k, v = problem.as_float64()
        reference = ops.c_transform_attention_matrix(q, k, f.double(), pairs(problem.token_mask), two_sided) @ v
        assert_close_to("fused ASAP", out, reference, problem)


@given(problem=problems(dtypes=(torch.float64, torch.float32)), n_iters=st.sampled_from([1, 3]))
def test_asap_fed_the_teachers_dual_reproduces_the_teacher(problem, n_iters):
    real_pairs = pairs(problem.token_mask)
    scores = ops.attention_scores(problem.q, problem.k)
    f = ops.teacher_query_dual(scores, n_iters, real_pairs)
    out = ops.fused_c_transform_attention(problem.q, problem.k, problem.v, f, problem.token_mask)
    teacher = ops.sinkhorn_attention(problem.q, problem.k, problem.v, n_iters, problem.token_mask, impl="unrolled")
    assert_finite("ASAP", out)
    if problem.smooth:
        assert_close_to("ASAP from the teacher's dual", out, teacher.double(), problem)


@given(problem=problems(square=False))
def test_softmax_fused_equals_dense_and_masks_keys(problem):
    key_mask = None if problem.token_mask is None else problem.token_mask.unsqueeze(-2)  # (B, 1, 1, m)
    out = ops.softmax_attention(problem.q, problem.k, problem.v, key_mask)
    assert_finite("softmax", out)
    matrix = ops.softmax_attention_matrix(problem.q, problem.k, key_mask)
    assert_finite("softmax matrix", matrix)
    if key_mask is not None:
        assert (matrix[~key_mask.expand(matrix.shape)] == 0).all(), "a masked key has mass"
    rows = (matrix.double().sum(-1) - 1).abs().max().item()
    tolerance = row_sum_tolerance(matrix.dtype, problem.largest_score, matrix.shape[-1])
    assert rows <= tolerance, f"softmax rows off by {rows:.2e} > {tolerance:.1e}"
    if problem.smooth:
        q, k, v = problem.as_float64()
        assert_close_to("softmax", out, ops.softmax_attention_matrix(q, k, key_mask) @ v, problem)


@given(problem=problems(max_n=32), num_slices=st.integers(1, 8))
def test_sliced_transport_is_finite_and_masks_pairs(problem, num_slices):
    directions = ops.slice_directions(problem.q.shape[-1], num_slices, seed=0)
    plan = ops.sliced_transport_plan(problem.q, problem.k, directions, mask=problem.token_mask)
    assert plan.dtype == problem.dtype
    assert_finite("sliced plan", plan)
    assert (plan >= 0).all()
    if problem.token_mask is not None:
        real = pairs(problem.token_mask).expand(plan.shape)
        assert (plan[~real] == 0).all(), "a masked pair has mass"
