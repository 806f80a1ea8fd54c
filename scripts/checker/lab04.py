"""Checks for lab 04 (SVD and LoRA).

Each ``check_*`` function builds its inputs from a seed, calls the student's
function on private copies through :func:`call_student`, computes the
reference with PyTorch in float64 (``torch.linalg`` for the SVD exercises,
autograd for the LoRA backward pass), and compares every quantity. Next to
the reference it computes, with trusted numpy code, what known mistakes would
produce on the same inputs (the *variants*), so a failure names the
misconception.

Singular vectors are unique only up to sign, so U and Vt are compared after
:func:`canonical_signs` puts every vector in a fixed sign convention; the
singular values and the reconstruction need no such care.

Visible checks use the default seed; the hidden checks in the grade cells
pass other seeds and shapes.
"""

from __future__ import annotations

import numpy as np
import torch

from .compare import Tolerance
from .exercise import ExerciseCheck, charge_once, outcome, score_parts
from .student import call_student, unpack
from .variants import exclusive

#: The exercises are numpy only: the grader blocks torch inside student code.
NUMPY_ONLY = True

DT = torch.float64

#: Two float64 SVDs (numpy's and PyTorch's LAPACK calls) agree to ~1e-14 on these small,
#: well-separated spectra; the gradient tolerance leaves a wide margin.
SVD_TOL = Tolerance(atol=1e-10, rtol=1e-7)

#: Grade-cell points of the checks that score each of their functions separately (partial credit per
#: function: checker.exercise.score_parts); tests/unit/test_partial_credit.py keeps them equal to the
#: notebook's.
POINTS = {"check_svd": 2.0, "check_low_rank": 3.0, "check_energy": 2.0, "check_lora_layer": 4.0}


def _t(a) -> torch.Tensor:
    return torch.tensor(np.asarray(a, dtype=np.float64), dtype=DT)


def _leaf(a) -> torch.Tensor:
    return torch.tensor(np.asarray(a, dtype=np.float64), dtype=DT, requires_grad=True)


def _is_float_matrix(a) -> bool:
    return (type(a) is np.ndarray and a.ndim == 2 and a.dtype.kind == "f" and a.size > 0
            and bool(np.all(np.isfinite(a))))


def canonical_signs(vectors: np.ndarray, axis: int) -> np.ndarray:
    """Flip each singular vector so that its entry of largest magnitude is positive.

    Parameters
    ----------
    vectors : ndarray of shape (m, k)
        The vectors along ``axis``: columns of U (``axis=0``) or rows of Vt (``axis=1``).
    axis : int
        0 when the vectors are columns, 1 when they are rows.

    Returns
    -------
    ndarray, same shape and float dtype (so a float32 answer is still reported as one): a private copy.
    """
    v = np.array(vectors, copy=True)
    if v.dtype.kind != "f":
        v = v.astype(np.float64)
    cols = v if axis == 0 else v.T
    biggest = np.argmax(np.abs(cols), axis=0)
    signs = np.sign(cols[biggest, np.arange(cols.shape[1])])
    signs[signs == 0] = 1.0
    cols *= signs  # a view into v
    return v


def _canonical_or_raw(received, axis: int):
    """Sign-canonical copy of a student's U or Vt; anything odd is passed on untouched for compare()."""
    return canonical_signs(received, axis) if _is_float_matrix(received) else received


def _full_completion(received, reduced: np.ndarray, axis: int):
    """What ``full_matrices=True`` returned, if ``received`` is exactly that.

    A full U is the reduced U followed by an orthonormal basis of the rest of the
    space; that basis is not unique (any rotation of it is as valid), so the variant
    is built from the student's own extra vectors once trusted code has verified
    that (a) the array is square with the full size, (b) it is orthogonal and (c) its
    first k vectors are the reduced ones. Returns None otherwise.
    """
    if not _is_float_matrix(received):
        return None
    size = reduced.shape[axis]
    k = reduced.shape[1 - axis]
    if received.shape != (size, size) or size == k:
        return None
    if not np.allclose(received.T @ received, np.eye(size), atol=1e-8):
        return None
    first = received[:, :k] if axis == 0 else received[:k, :]
    if not np.allclose(canonical_signs(first, axis), canonical_signs(reduced, axis), atol=1e-8):
        return None
    return canonical_signs(received, axis)


# ---------------------------------------------------------------------------
# Exercise 1: the reduced SVD and reconstruction
# ---------------------------------------------------------------------------


def _torch_svd(M: np.ndarray):
    U, S, Vh = torch.linalg.svd(_t(M), full_matrices=False)
    return U.numpy().copy(), S.numpy().copy(), Vh.numpy().copy()


def check_svd(reduced_svd, reconstruct, seed=0, shapes=((6, 4), (3, 5))):
    """Check ``reduced_svd(M) -> (U, S, Vt)`` and ``reconstruct(U, S, Vt) -> M``, each for its own points.

    ``shapes`` lists (m, n) pairs; include tall and wide matrices, since
    ``full_matrices=True`` enlarges U for a tall matrix and Vt for a wide one.
    U and Vt are compared after fixing each vector's sign (see :func:`canonical_signs`).
    ``reconstruct`` gets torch's factors, not the student's, so the two are scored apart.
    """
    check = ExerciseCheck("reduced SVD", reference="torch.linalg.svd", tol=SVD_TOL)
    cases = []
    for j, (m, n) in enumerate(shapes):
        M = np.random.default_rng(seed + j).normal(size=(m, n))
        cases.append((M, *_torch_svd(M), f"M of shape {(m, n)}"))

    def svd_part():
        for M, U_ref, S_ref, Vt_ref, where in cases:
            call = call_student(reduced_svd, "reduced_svd", M=M)
            U, S, Vt = unpack(call.result, "reduced_svd", ("U", "S", "Vt"))
            check.compare("S", S, S_ref, call, case=where)
            full_U = _full_completion(U, U_ref, axis=0)
            check.compare("U", _canonical_or_raw(U, 0), canonical_signs(U_ref, 0), call, case=where,
                          variants={"svd-full-matrices": full_U} if full_U is not None else None)
            full_Vt = _full_completion(Vt, Vt_ref, axis=1)
            check.compare("Vt", _canonical_or_raw(Vt, 1), canonical_signs(Vt_ref, 1), call, case=where,
                          variants={"svd-full-matrices": full_Vt} if full_Vt is not None else None)
            # Signs were fixed per vector above; the pairs must still agree, or the factors rebuild another matrix.
            check.compare("M rebuilt from your U, S, Vt", (U * S) @ Vt, M, case=where, reference="M itself")

    def reconstruct_part():
        for M, U_ref, S_ref, Vt_ref, where in cases:
            call = call_student(reconstruct, "reconstruct", U=U_ref, S=S_ref, Vt=Vt_ref)
            rebuilt = (_t(U_ref) @ torch.diag(_t(S_ref)) @ _t(Vt_ref)).numpy()
            check.compare("reconstruct(U, S, Vt)", call.result, rebuilt, call, case=where, reference="torch matmul")

    outcomes = {"reduced_svd": outcome(svd_part), "reconstruct": outcome(reconstruct_part)}
    check.cases = len(cases)
    return score_parts(POINTS["check_svd"], outcomes, check.passed, "check_svd")


def _reduced_svd(M):
    """Exercise 1's ``reduced_svd`` as a correct submission has it."""
    return tuple(np.linalg.svd(M, full_matrices=False))


def _reconstruct(U, S, Vt):
    """Exercise 1's ``reconstruct`` as a correct submission has it."""
    return (U * S) @ Vt


#: Exercise 1's functions, which ``low_rank_approx`` may call by name: when it fails only because of
#: them, it passes with these in their place and the mistake costs Exercise 1's points only.
EXERCISE_1_REFERENCES = {"reduced_svd": (_reduced_svd, "Exercise 1"), "reconstruct": (_reconstruct, "Exercise 1")}


# ---------------------------------------------------------------------------
# Exercise 2: Eckart-Young, the best rank-k approximation and its errors
# ---------------------------------------------------------------------------


def _kept(S: np.ndarray, k: int) -> tuple[float, float]:
    """Frobenius and spectral norms of the rank-k approximation itself (the kept part)."""
    return float(np.sqrt(np.sum(S[:k] ** 2))), float(S[0]) if k > 0 else 0.0


def _tail(S: np.ndarray, k: int) -> tuple[float, float]:
    """The right errors for keeping k values (0 <= k <= len(S))."""
    return float(np.sqrt(np.sum(S[k:] ** 2))), float(S[k]) if k < len(S) else 0.0


def _truncate(U, S, Vt, k):
    return (U[:, :k] * S[:k]) @ Vt[:k, :]


def check_low_rank(low_rank_approx, rank_k_errors, seed=0, shape=(6, 4), ranks=(2, 1, 4)):
    """Check ``low_rank_approx(M, k) -> M_k`` and ``rank_k_errors(S, k) -> (frobenius, spectral)``, each
    for its own points.

    The errors the student computes from the singular values alone are compared
    with ``torch.linalg.matrix_norm`` of ``M - M_k`` computed directly. Put a rank
    of at least 2 first: at k = 1 the largest kept value S[0] is also S[k - 1], so
    two mistakes give the same spectral error there and the first failure names one.
    """
    check = ExerciseCheck("Eckart-Young", reference="torch.linalg (direct computation)", tol=SVD_TOL)
    M = np.random.default_rng(seed).normal(size=shape)
    Mt = _t(M)
    Ut, St, Vht = torch.linalg.svd(Mt, full_matrices=False)
    U, S, Vt = Ut.numpy().copy(), St.numpy().copy(), Vht.numpy().copy()
    n_values = len(S)
    cases = []
    for k in ranks:
        M_k = (Ut[:, :k] @ torch.diag(St[:k]) @ Vht[:k, :])
        residual = Mt - M_k
        cases.append((k, f"k={k}, M of shape {shape}", M_k.numpy(),
                      torch.linalg.matrix_norm(residual, ord="fro").item(),
                      torch.linalg.matrix_norm(residual, ord=2).item()))

    # Every mistake named below holds for every k, so it fails the first case already. A function that
    # passed an earlier case and fails a later one has an edge-case bug (at k = min(M.shape) nothing is
    # discarded, so both errors are 0), whatever value it happens to give there: the later cases name nothing.
    def approx_part():
        for i, (k, where, M_k, _, _) in enumerate(cases):
            call = call_student(low_rank_approx, "low_rank_approx", M=M, k=k)
            neighbours = [_truncate(U, S, Vt, j) for j in (k - 1, k + 1) if 0 <= j <= n_values]
            check.compare("M_k", call.result, M_k, call, case=where,
                          variants={"rank-k-off-by-one": neighbours} if i == 0 else None)

    def errors_part():
        for i, (k, where, _, frob_ref, spec_ref) in enumerate(cases):
            call = call_student(rank_k_errors, "rank_k_errors", S=S, k=k)
            frob, spec = unpack(call.result, "rank_k_errors", ("frobenius", "spectral"))
            kept_frob, kept_spec = _kept(S, k)
            shifted = [_tail(S, j) for j in (k - 1, k + 1) if 0 <= j <= n_values]
            frob_wrong = {"rank-k-error-from-kept": kept_frob, "rank-k-off-by-one": [f for f, _ in shifted],
                          "norm-not-rooted": frob_ref ** 2, "energy-not-squared": float(np.sqrt(np.sum(S[k:])))}
            spec_wrong = {"rank-k-error-from-kept": kept_spec, "rank-k-off-by-one": [s for _, s in shifted]}
            check.compare("Frobenius error", frob, frob_ref, call, case=where,
                          variants=exclusive(frob_wrong, frob_ref) if i == 0 else None)
            check.compare("spectral error", spec, spec_ref, call, case=where,
                          variants=exclusive(spec_wrong, spec_ref) if i == 0 else None)

    # low_rank_approx may be built on Exercise 1's functions: a mistake there is charged there only.
    outcomes = {"low_rank_approx": outcome(lambda: charge_once(approx_part, depends_on=EXERCISE_1_REFERENCES)),
                "rank_k_errors": outcome(errors_part)}
    check.cases = len(cases)
    return score_parts(POINTS["check_low_rank"], outcomes, check.passed, "check_low_rank")


# ---------------------------------------------------------------------------
# Exercise 3: energy captured and the rank for a target energy
# ---------------------------------------------------------------------------


def _decaying_spectrum(seed: int, n: int) -> np.ndarray:
    """Singular values of a random matrix with a geometrically decaying spectrum, largest first."""
    rng = np.random.default_rng(seed)
    Q1, _ = np.linalg.qr(rng.normal(size=(n + 3, n)))
    Q2, _ = np.linalg.qr(rng.normal(size=(n, n)))
    M = (Q1 * (0.7 ** np.arange(n) * rng.uniform(0.8, 1.2, size=n))) @ Q2.T
    return torch.linalg.svdvals(_t(M)).numpy().copy()


def _rank_for(energy: np.ndarray, target: float) -> int:
    return int(np.argmax(energy >= target)) + 1


def check_energy(energy_captured, rank_for_energy, seed=0, n_values=8, targets=(0.9, 0.99, 0.25)):
    """Check ``energy_captured(S) -> (len(S),)`` and ``rank_for_energy(S, target) -> int``, each for its
    own points (a rank built on a wrong ``energy_captured`` keeps its points when right given a right one).

    Targets are kept away from the cumulative energies, so rounding cannot decide a rank, and put
    first where the rank from unsquared energies differs from the right rank by 2 or more (so it
    cannot pass for an off-by-one). A last case puts a target exactly on a cumulative energy.
    """
    check = ExerciseCheck("energy and rank", reference="torch (cumsum of S**2)", tol=SVD_TOL)
    S = _decaying_spectrum(seed, n_values)
    St = _t(S)
    energy_ref = (torch.cumsum(St ** 2, 0) / torch.sum(St ** 2)).numpy()
    unsquared = np.cumsum(S) / np.sum(S)
    # Squares in the numerator only: normalised by (sum S)**2 instead of sum(S**2); or squared after the sums.
    half_squared = np.cumsum(S ** 2) / np.sum(S) ** 2
    squared_after = (np.cumsum(S) / np.sum(S)) ** 2
    if np.min(np.abs(energy_ref[:, None] - np.asarray(targets)[None, :])) < 1e-6:
        raise ValueError("a target lies on a cumulative energy; choose other targets")  # check author's bug

    def energy_part():
        call = call_student(energy_captured, "energy_captured", S=S)
        check.compare("energy", call.result, energy_ref, call,
                      variants={"energy-not-squared": [unsquared, half_squared, squared_after]})

    def rank_part():
        for target in targets:
            k_ref = int((energy_ref < target).sum()) + 1  # count of values still short of the target, plus one
            call = call_student(rank_for_energy, "rank_for_energy", S=S, target=target)
            wrong_unsquared = _rank_for(unsquared, target)
            check.compare("rank", call.result, k_ref, call, case=f"target={target}", require_float64=False,
                          variants=exclusive({"rank-k-off-by-one": [k_ref - 1, k_ref + 1],
                                              "energy-not-squared": wrong_unsquared}, k_ref))
        # A target that a cumulative energy reaches exactly: S**2 = (9, 4, 1, 1, 1) / 16 are exact binary
        # fractions, so every way of summing them gives 13/16 exactly. Rank 2 reaches the target; a strict
        # comparison asks for rank 3. The off-by-one mistakes already failed above, so k + 1 here means the tie.
        S_tie = np.array([3.0, 2.0, 1.0, 1.0, 1.0])
        tie_target = 13.0 / 16.0
        call = call_student(rank_for_energy, "rank_for_energy", S=S_tie, target=tie_target)
        check.compare("rank", call.result, 2, call,
                      case="target=13/16 reached exactly at rank 2, S=(3, 2, 1, 1, 1)",
                      require_float64=False, variants={"comparison-at-tie": 3, "rank-k-off-by-one": 1})

    # rank_for_energy is usually built on energy_captured: a wrong energy is charged to energy_captured only.
    sibling = {"energy_captured": (_energy_captured, "its own part of this exercise")}
    outcomes = {"energy_captured": outcome(energy_part),
                "rank_for_energy": outcome(lambda: charge_once(rank_part, depends_on=sibling))}
    check.cases = 2
    return score_parts(POINTS["check_energy"], outcomes, check.passed, "check_energy")


def _energy_captured(S):
    """``energy_captured`` as a correct submission has it."""
    return np.cumsum(S ** 2) / np.sum(S ** 2)


# ---------------------------------------------------------------------------
# LoRA inputs shared by exercises 4-6
# ---------------------------------------------------------------------------


def _lora_inputs(seed, n, d_in, d_out, r):
    """x, frozen W, A and a non-zero B (a zero B would hide a wrong dL/dA), and an upstream gradient."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d_in))
    W = rng.normal(size=(d_out, d_in)) / np.sqrt(d_in)
    A = rng.normal(size=(r, d_in)) / np.sqrt(d_in)
    B = rng.normal(size=(d_out, r))
    dL_dy = rng.normal(size=(n, d_out))
    return x, W, A, B, dL_dy


def _wrong_scales(alpha: float, r: int, d_in: int, d_out: int, n: int | None = None) -> list[float]:
    """Scalings a student might use instead of alpha / r: none, alpha alone, 1 / r, r / alpha, alpha / r**2,
    and alpha over a dimension that is not the rank (d_out = B.shape[0], d_in = A.shape[1]).

    A dimension-based scale is left out where its ratio to alpha / r is one the catalogue's generic
    detectors read as another mistake (2 or 1/2, and N or 1/N for gradients, with ``n``): there the
    two names would fit the same value.
    """
    right = alpha / r
    scales = [1.0, alpha, 1.0 / r, r / alpha, alpha / r ** 2]
    generic = [2.0, 0.5] + ([float(n), 1.0 / n] if n else [])
    for d in (d_out, d_in):
        ratio = (alpha / d) / right
        if all(abs(ratio - g) > 1e-9 * g for g in generic):
            scales.append(alpha / d)
    return [s for s in scales if abs(s - right) > 1e-12]


def _lora_numpy(x, W, A, B, dL_dy, scale):
    """Trusted forward and backward pass with a given scaling (for variants)."""
    h = x @ A.T
    y = x @ W.T + scale * h @ B.T
    dL_dh = scale * dL_dy @ B
    return y, dL_dh.T @ x, scale * dL_dy.T @ h, dL_dy @ W + dL_dh @ A


# ---------------------------------------------------------------------------
# Exercise 4: initialisation, B = 0 and A random
# ---------------------------------------------------------------------------


def check_lora_init(init_lora, seed=0, dims=((5, 3, 4),), alpha=6.0, n_samples=7):
    """Check ``init_lora(d_in, d_out, r, seed) -> (A, B)``.

    ``dims`` lists (d_in, d_out, r). A must be the draw the docstring specifies, B
    must be exactly zero, and the layer at initialisation must compute the
    pretrained layer's output (checked with ``torch.nn.functional.linear``).
    """
    check = ExerciseCheck("init_lora", reference="the specified initialisation")
    for j, (d_in, d_out, r) in enumerate(dims):
        init_seed = seed + 10 * j
        where = f"d_in={d_in}, d_out={d_out}, r={r}"
        A_ref = np.random.default_rng(init_seed).normal(0.0, 1.0 / np.sqrt(d_in), size=(r, d_in))
        call = call_student(init_lora, "init_lora", d_in=d_in, d_out=d_out, r=r, seed=init_seed)
        A, B = unpack(call.result, "init_lora", ("A", "B"))
        # A zero A next to a non-zero B is the swapped initialisation.
        swapped = _is_float_matrix(B) and B.shape == (d_out, r) and np.any(B != 0)
        # The variance 1 / d_in passed where numpy expects the standard deviation 1 / sqrt(d_in).
        A_var_as_std = np.random.default_rng(init_seed).normal(0.0, 1.0 / d_in, size=(r, d_in))
        check.compare("A", A, A_ref, call, case=where,
                      variants=exclusive({"lora-init-swapped": np.zeros((r, d_in)) if swapped else None,
                                          "init-std-as-variance": A_var_as_std}, A_ref))
        check.compare("B", B, np.zeros((d_out, r)), call, case=where)

        rng = np.random.default_rng(init_seed + 1)
        x, W = rng.normal(size=(n_samples, d_in)), rng.normal(size=(d_out, d_in))
        pretrained = torch.nn.functional.linear(_t(x), _t(W))
        adapted = pretrained + (alpha / r) * torch.nn.functional.linear(
            torch.nn.functional.linear(_t(x), _t(A)), _t(B))
        check.compare("layer output at init", adapted.numpy(), pretrained.numpy(), case=where,
                      reference="the pretrained layer (torch.nn.functional.linear)")
        check.cases += 1
    return check.passed()


# ---------------------------------------------------------------------------
# Exercise 5: the LoRA layer, forward and hand-derived backward
# ---------------------------------------------------------------------------


def check_lora_layer(lora_forward, lora_backward, seed=0, dims=((5, 6, 7, 3),), alpha=12.0):
    """Check ``lora_forward(x, W, A, B, alpha) -> y`` and
    ``lora_backward(dL_dy, x, W, A, B, alpha) -> (dL_dA, dL_dB, dL_dx)`` against autograd, each for its
    own points (the backward pass is given the inputs, not the student's forward output).

    ``dims`` lists (n_samples, d_in, d_out, r). B is random (not zero) so that every
    gradient, dL/dA included, is non-zero and a wrong formula shows. Choose N, r and alpha so that
    none of N, r, alpha, alpha / r coincide or equal 1 or 2: a division by N must not look like a
    wrong LoRA scale (tests/unit/test_checker.py asserts the variants stay apart).
    """
    check = ExerciseCheck("LoRA layer")
    cases = []
    for j, (n, d_in, d_out, r) in enumerate(dims):
        x, W, A, B, dL_dy = _lora_inputs(seed + j, n, d_in, d_out, r)
        xt, At, Bt = _leaf(x), _leaf(A), _leaf(B)
        Wt = _t(W)  # frozen: no gradient
        yt = xt @ Wt.T + (alpha / r) * (xt @ At.T) @ Bt.T
        yt.backward(_t(dL_dy))
        unscaled = [_lora_numpy(x, W, A, B, dL_dy, s) for s in _wrong_scales(alpha, r, d_in, d_out, n)]
        right = _lora_numpy(x, W, A, B, dL_dy, alpha / r)
        cases.append((n, x, W, A, B, dL_dy, xt, At, Bt, yt.detach().numpy(), unscaled, right,
                      f"N={n}, d_in={d_in}, d_out={d_out}, r={r}, alpha={alpha}"))

    def forward_part():
        for _, x, W, A, B, _, _, _, _, y_ref, unscaled, _, where in cases:
            call = call_student(lora_forward, "lora_forward", x=x, W=W, A=A, B=B, alpha=alpha)
            check.compare("y", call.result, y_ref, call, case=where, reference="PyTorch forward",
                          variants=exclusive({"lora-missing-scaling": [u[0] for u in unscaled]}, y_ref))

    def backward_part():
        for n, x, W, A, B, dL_dy, xt, At, Bt, _, unscaled, right, where in cases:
            call = call_student(lora_backward, "lora_backward", dL_dy=dL_dy, x=x, W=W, A=A, B=B, alpha=alpha)
            dL_dA, dL_dB, dL_dx = unpack(call.result, "lora_backward", ("dL_dA", "dL_dB", "dL_dx"))
            # mean_count=n: lora_backward takes no mean, so a division by N is batch-size-scaling.
            check.compare("dL/dA", dL_dA, At.grad.numpy(), call, case=where, mean_count=n,
                          variants=exclusive({"lora-gradient-transposed": right[1].T,
                                              "lora-missing-scaling": [u[1] for u in unscaled]}, At.grad.numpy()))
            check.compare("dL/dB", dL_dB, Bt.grad.numpy(), call, case=where, mean_count=n,
                          variants=exclusive({"lora-gradient-transposed": right[2].T,
                                              "lora-missing-scaling": [u[2] for u in unscaled]}, Bt.grad.numpy()))
            check.compare("dL/dx", dL_dx, xt.grad.numpy(), call, case=where, mean_count=n,
                          variants=exclusive({"lora-dx-missing-adapter": dL_dy @ W,
                                              "lora-missing-scaling": [u[3] for u in unscaled]}, xt.grad.numpy()))

    outcomes = {"lora_forward": outcome(forward_part), "lora_backward": outcome(backward_part)}
    check.cases = len(cases)
    return score_parts(POINTS["check_lora_layer"], outcomes, check.passed, "check_lora_layer")


# ---------------------------------------------------------------------------
# Exercise 6: merging the adapter into W
# ---------------------------------------------------------------------------


def check_lora_merge(merge_lora, seed=0, dims=((5, 7, 3),), alpha=12.0):
    """Check ``merge_lora(W, A, B, alpha) -> W_merged`` of shape (d_out, d_in).

    The reference is ``W + (alpha / r) B A`` in torch; the merged layer must then
    compute what the unmerged LoRA layer computes.
    """
    check = ExerciseCheck("merge_lora", reference="torch")
    for j, (d_in, d_out, r) in enumerate(dims):
        x, W, A, B, _ = _lora_inputs(seed + j, 3, d_in, d_out, r)
        where = f"d_in={d_in}, d_out={d_out}, r={r}, alpha={alpha}"
        merged_ref = _t(W) + (alpha / r) * _t(B) @ _t(A)
        call = call_student(merge_lora, "merge_lora", W=W, A=A, B=B, alpha=alpha)
        check.compare("W_merged", call.result, merged_ref.numpy(), call, case=where,
                      variants=exclusive({"lora-missing-scaling": [W + s * B @ A
                                                                   for s in _wrong_scales(alpha, r, d_in, d_out)],
                                          "sign-flipped": W - (alpha / r) * B @ A}, merged_ref.numpy()))
        check.cases += 1
    return check.passed()


# ---------------------------------------------------------------------------
# Exercise 7: parameter counts
# ---------------------------------------------------------------------------


def check_param_counts(lora_param_counts, cases=((768, 768, 1), (768, 768, 8), (768, 768, 16))):
    """Check ``lora_param_counts(d_in, d_out, r) -> (n_full, n_lora, reduction_percent)``.

    The reference counts the elements of a bias-free ``torch.nn.Linear`` weight and of
    LoRA's two factors, shaped as PyTorch would hold them (no memory is allocated).
    """
    check = ExerciseCheck("lora_param_counts", reference="torch parameter counts", tol=Tolerance(1e-9, 1e-12))
    for d_in, d_out, r in cases:
        where = f"d_in={d_in}, d_out={d_out}, r={r}"
        with torch.device("meta"):
            full = torch.nn.Linear(d_in, d_out, bias=False).weight.numel()
            lora = torch.empty(r, d_in).numel() + torch.empty(d_out, r).numel()
        call = call_student(lora_param_counts, "lora_param_counts", d_in=d_in, d_out=d_out, r=r)
        n_full, n_lora, percent = unpack(call.result, "lora_param_counts", ("n_full", "n_lora", "reduction_percent"))
        check.compare("n_full", n_full, full, call, case=where, require_float64=False)
        check.compare("n_lora", n_lora, lora, call, case=where, require_float64=False)
        check.compare("reduction_percent", percent, 100.0 * (1.0 - lora / full), call, case=where,
                      require_float64=False)
        check.cases += 1
    return check.passed()


__all__ = ["NUMPY_ONLY", "canonical_signs", "check_svd", "check_low_rank", "check_energy", "check_lora_init",
           "check_lora_layer", "check_lora_merge", "check_param_counts"]
