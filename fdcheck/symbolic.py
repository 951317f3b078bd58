"""The contrastive loss of Definition 2.2 derived in SymPy: the independent oracle for the analytic gradient.

:mod:`fdcheck.loss` computes the loss (2.2) with the stop-gradient and differentiates it by hand. This module
writes the loss of one positive pair entry by entry as a SymPy expression for small sizes, differentiates it
symbolically with respect to every entry of ``W`` and compiles loss and gradient to a NumPy function, so the
hand-written gradient can be checked against a derivation that shares no code with it.

* **The pair loss is (2.2) as printed**: ``ℓ = −τ log( e^{Sim(x, x')/τ} / Σ_{c ∈ B} e^{Sim(x, c)/τ} )``, not
  Section 4's rearrangement ``−Sim + τ log Σ`` that :mod:`fdcheck.loss` evaluates. A batch of ``n`` positives
  is the mean of the pair losses (DESIGN.md's convention), taken here in NumPy, so one symbolic derivation per
  ``(m, d1, k)`` serves every ``n``.
* **The stop-gradient is made explicit**: the stopped branch ``sg f(c)`` is built from a *separate* matrix of
  symbols ``W_sg`` (the stopped copy of ``W``), the derivative is taken with respect to ``W`` only, and ``W_sg``
  then takes the value of ``W``. The variant without the stop-gradient (``stop_gradient=False``) uses ``W`` in
  both branches, so its derivative also flows through ``f(x')`` and ``f(x_neg)``: that is the gradient the
  implementation must *not* equal.
* **The kink**: the activation is written with ``Max``, ``h(u) = Max(u − b, 0) − Max(−u − b, 0)``
  (Section 2.2). Its derivative is ``Heaviside``, which SymPy sets to ``1/2`` at ``0``, i.e. exactly at
  ``|<w, x>| = b`` where the loss is not differentiable, while the implementation's one-sided derivative is 0
  there. Compare the two only on inputs whose pre-activations keep away from ``±b`` (:func:`kink_margin`).

The compiled functions are cached per ``(m, d1, k, include_positive, stop_gradient)``: a property test that draws
many examples pays the derivation (a fraction of a second to a few seconds, growing fast with the sizes) once per
shape. Loss and gradient are evaluated in float64 with the plain ``exp`` of (2.2), so keep similarities
moderate (``|Sim/τ|`` well below 700); overflow raises ``FloatingPointError`` rather than returning ``inf``.
"""

from __future__ import annotations

import functools
from functools import lru_cache
from typing import Any, Callable

import numpy as np
import sympy as sp
from sympy.printing.numpy import NumPyPrinter

__all__ = [
    "MAX_SIZE",
    "build_pair_loss",
    "kink_margin",
    "pair_loss_and_grad_function",
    "symbolic_loss_and_grad",
]

MAX_SIZE = 6  # the derivation's cost grows fast with m, d1 and k; the oracle is meant for tiny problems


def _activation(u: sp.Expr, b: sp.Expr) -> sp.Expr:
    # Section 2.2: h(u) = ReLU(u − b) − ReLU(−u − b), ReLU written with Max so SymPy owns its derivative.
    return sp.Max(u - b, 0) - sp.Max(-u - b, 0)


def _matrix_symbols(name: str, rows: int, cols: int) -> sp.Matrix:
    return sp.Matrix(rows, cols, lambda r, c: sp.Symbol(f"{name}_{r}_{c}"))


def _check_size(name: str, value: Any) -> None:
    if not (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_SIZE):
        raise ValueError(f"{name}={value!r} is out of range for the symbolic oracle; allowed: 1..{MAX_SIZE}")


def build_pair_loss(m: int, d1: int, k: int, include_positive: bool = True, stop_gradient: bool = True
                    ) -> tuple[sp.Expr, dict[str, Any]]:
    """The loss (2.2) of one positive pair as a SymPy expression, with the symbols it is written in.

    Args:
        m: number of neurons.
        d1: input dimension.
        k: number of negatives.
        include_positive: whether the denominator set ``B`` contains the positive ``x'`` (see :mod:`fdcheck.loss`).
        stop_gradient: when True the second branch uses the separate symbols ``W_sg``; when False it uses ``W``.

    Returns:
        ``(loss, symbols)``: ``symbols`` holds the matrices ``W`` and ``W_sg`` ``(m, d1)`` (the same matrix when
        ``stop_gradient`` is False), ``b`` ``(m, 1)``, ``x`` and ``x_prime`` ``(1, d1)``, ``x_neg`` ``(k, d1)``
        and the scalar ``tau``.
    """
    for name, value in (("m", m), ("d1", d1), ("k", k)):
        _check_size(name, value)
    W = _matrix_symbols("W", m, d1)
    W_sg = _matrix_symbols("Wsg", m, d1) if stop_gradient else W
    b = _matrix_symbols("b", m, 1)
    x = _matrix_symbols("xa", 1, d1)
    x_prime = _matrix_symbols("xb", 1, d1)
    x_neg = _matrix_symbols("xn", k, d1)
    tau = sp.Symbol("tau", positive=True)

    def feats(weights: sp.Matrix, rows: sp.Matrix, i: int) -> list[sp.Expr]:
        return [_activation(sum(weights[r, c] * rows[i, c] for c in range(d1)), b[r, 0]) for r in range(m)]

    def sim(fa: list[sp.Expr], fc: list[sp.Expr]) -> sp.Expr:
        # Definition 2.2: Sim_f(a, c) = <f(a), StopGrad(f(c))>; the stop lives in which weights built fc.
        return sum(p * q for p, q in zip(fa, fc))

    f_x = feats(W, x, 0)
    numerator = sp.exp(sim(f_x, feats(W_sg, x_prime, 0)) / tau)
    denominator = sum(sp.exp(sim(f_x, feats(W_sg, x_neg, s)) / tau) for s in range(k))
    if include_positive:
        denominator = denominator + numerator
    loss = -tau * sp.log(numerator / denominator)
    return loss, {"W": W, "W_sg": W_sg, "b": b, "x": x, "x_prime": x_prime, "x_neg": x_neg, "tau": tau}


def _compile(arguments: list[list[sp.Symbol]], outputs: list[sp.Expr]) -> Callable[..., list[Any]]:
    """Compile ``outputs`` to one NumPy function of the flat symbol lists ``arguments``.

    Common subexpressions are shared (``sympy.cse``) and the code is printed with SymPy's NumPy printer; this
    is what ``lambdify(cse=True)`` does, without its canonical reordering, which costs seconds on these sizes.
    """
    replacements, reduced = sp.cse(outputs, order="none")
    printer = NumPyPrinter({"order": "none", "fully_qualified_modules": True})
    names = [f"arg{i}" for i in range(len(arguments))]
    lines = [f"def oracle({', '.join(names)}):"]
    for name, group in zip(names, arguments):
        lines.append(f"    [{', '.join(str(s) for s in group)}] = {name}")
    for symbol, expr in replacements:
        lines.append(f"    {symbol} = {printer.doprint(expr)}")
    lines.append(f"    return [{', '.join(printer.doprint(e) for e in reduced)}]")
    namespace: dict[str, Any] = {"numpy": np, "functools": functools}
    exec(compile("\n".join(lines), "<fdcheck.symbolic>", "exec"), namespace)  # noqa: S102 (our own printed code)
    return namespace["oracle"]


@lru_cache(maxsize=None)
def pair_loss_and_grad_function(m: int, d1: int, k: int, include_positive: bool = True, stop_gradient: bool = True
                                ) -> Callable[..., tuple[float, np.ndarray]]:
    """A compiled ``(W, b, x, x_prime, x_neg, tau) -> (loss, dℓ/dW)`` for one positive pair (cached per shape).

    With ``stop_gradient=True`` the derivative is taken with respect to ``W`` holding ``W_sg`` fixed, and
    ``W_sg`` is then given the value of ``W``: the gradient of Definition 2.2. Inputs are read as float64
    (``x`` and ``x_prime`` as ``(d1,)`` rows); the gradient comes back as an ``(m, d1)`` float64 array.
    """
    loss, sym = build_pair_loss(m, d1, k, include_positive, stop_gradient)
    W = sym["W"]
    grad = [sp.diff(loss, w) for w in W]  # row-major over (m, d1)
    arguments = [list(W), list(sym["b"]), list(sym["x"]), list(sym["x_prime"]), list(sym["x_neg"]), [sym["tau"]]]
    if stop_gradient:
        arguments.append(list(sym["W_sg"]))
    oracle = _compile(arguments, [loss, *grad])

    def evaluate(W_: Any, b_: Any, x_: Any, x_prime_: Any, x_neg_: Any, tau_: float) -> tuple[float, np.ndarray]:
        w = np.asarray(W_, dtype=np.float64).ravel().tolist()
        values = [w] + [np.asarray(a, dtype=np.float64).ravel().tolist() for a in (b_, x_, x_prime_, x_neg_)]
        values.append([float(tau_)])
        if stop_gradient:
            values.append(w)  # the stopped copy takes the value of W; it was not differentiated
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            out = oracle(*values)
        return float(out[0]), np.asarray([float(g) for g in out[1:]], dtype=np.float64).reshape(m, d1)

    return evaluate


def symbolic_loss_and_grad(W: Any, b: Any, x1: Any, x2: Any, x_neg: Any, tau: float, include_positive: bool = True,
                           stop_gradient: bool = True) -> tuple[float, np.ndarray]:
    """Loss (2.2), the mean over positive pairs, and its gradient with respect to ``W``, from SymPy.

    Same arguments as :func:`fdcheck.loss.contrastive_loss_and_grad` (host arrays: NumPy or anything
    ``numpy.asarray`` reads), plus ``stop_gradient`` (False gives the gradient with the stop-gradient removed).
    ``m``, ``d1`` and ``k`` must each be at most :data:`MAX_SIZE`; any number of positives. Inputs must keep away
    from the kinks (see the module docstring).

    Returns:
        ``(loss, dL/dW)`` as a Python float and an ``(m, d1)`` float64 NumPy array.
    """
    W = np.asarray(W, dtype=np.float64)
    x1 = np.asarray(x1, dtype=np.float64)
    x2 = np.asarray(x2, dtype=np.float64)
    x_neg = np.asarray(x_neg, dtype=np.float64)
    if W.ndim != 2 or x1.ndim != 2 or x2.shape != x1.shape or x_neg.ndim != 2:
        raise ValueError(f"shapes W {W.shape}, x1 {x1.shape}, x2 {x2.shape}, x_neg {x_neg.shape}: "
                         "expected (m, d1), (n, d1), (n, d1), (k, d1)")
    m, d1 = (int(s) for s in W.shape)
    if x1.shape[1] != d1 or x_neg.shape[1] != d1 or x1.shape[0] < 1:
        raise ValueError(f"x1 {x1.shape} and x_neg {x_neg.shape} must have d1 = {d1} columns and x1 a row")
    pair = pair_loss_and_grad_function(m, d1, int(x_neg.shape[0]), bool(include_positive), bool(stop_gradient))
    losses, grads = zip(*(pair(W, b, x1[i], x2[i], x_neg, tau) for i in range(x1.shape[0])))
    return float(np.mean(losses)), np.mean(np.stack(grads), axis=0)


def kink_margin(W: Any, b: Any, *batches: Any) -> float:
    """The smallest distance ``| |<w_i, x>| − b_i |`` over neurons and the rows of every batch given.

    The loss is not differentiable where this is 0; gradient comparisons need it well above the
    finite-difference step times ``max |x|``.
    """
    W = np.asarray(W, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    margins = [np.min(np.abs(np.abs(np.asarray(x, dtype=np.float64) @ W.T) - b[None, :])) for x in batches]
    return float(min(margins))
