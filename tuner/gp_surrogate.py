"""A small Gaussian process (Matérn 5/2 with a length scale per feature, plus a linear term)
in NumPy.

The valid-set sampler (``tuner/valid_set_sampler.py``) needs a surrogate it can fit in tens of
milliseconds on a few hundred trials and evaluate on thousands of candidate configurations per
ask. Optuna's own GP lives behind its sampler (and PyTorch, an optional extra here), so this
one is written out: exact inference with a Cholesky factor, hyperparameters by maximum a
posteriori with analytic gradients (scipy's L-BFGS-B), warm-started from the previous fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import cho_solve
from scipy.linalg import cholesky
from scipy.linalg import solve_triangular
from scipy.optimize import minimize

Array = NDArray[np.float64]

SQRT5 = math.sqrt(5.0)
LOG_LENGTH_BOUNDS = (math.log(0.03), math.log(30.0))
LOG_SIGNAL_BOUNDS = (math.log(0.05), math.log(20.0))
LOG_NOISE_BOUNDS = (math.log(1e-6), math.log(0.5))
LOG_LINEAR_BOUNDS = (math.log(1e-4), math.log(10.0))
LENGTH_PRIOR_MEAN = math.log(0.5)  # features are scaled to [0, 1]
LENGTH_PRIOR_SD = 1.5
MAX_ITERATIONS = 60
OPTIMISE_CAP = 200  # points the hyperparameters are fitted on


def _scaled_sq_distances(a: Array, b: Array, inv_length: Array) -> Array:
    """Squared distances after dividing each feature by its length scale."""
    sa, sb = a * inv_length, b * inv_length
    d2 = (sa * sa).sum(1)[:, None] + (sb * sb).sum(1)[None, :] - 2.0 * sa @ sb.T
    return np.maximum(d2, 0.0)


def _matern52(r: Array) -> Array:
    return (1.0 + SQRT5 * r + (5.0 / 3.0) * r * r) * np.exp(-SQRT5 * r)


@dataclass
class GaussianProcess:
    """Zero-mean GP on standardised targets (``fit`` then ``predict``)."""

    log_length: Array
    log_signal: float = 0.0
    log_noise: float = math.log(1e-4)
    log_linear: float = math.log(0.1)

    @classmethod
    def new(cls, dims: int) -> GaussianProcess:
        return cls(log_length=np.full(dims, LENGTH_PRIOR_MEAN))

    def fit(self, x: Array, y: Array, optimise: bool = True) -> GaussianProcess:
        """Condition on ``(x, y)``; with ``optimise``, first refit the hyperparameters."""
        self.mean_, self.scale_ = float(y.mean()), float(y.std()) or 1.0
        z = (y - self.mean_) / self.scale_
        if optimise and len(y) >= 3:
            pick = np.arange(len(y))
            if len(y) > OPTIMISE_CAP:  # the marginal likelihood costs O(n^3) per step
                pick = np.random.default_rng(len(y)).choice(len(y), OPTIMISE_CAP, replace=False)
            self._optimise(x[pick], z[pick])
        self.x_ = x
        self._factor(z)
        return self

    def predict(self, x: Array) -> tuple[Array, Array]:
        """Posterior mean and standard deviation at ``x``, in the targets' units."""
        mean, var, _ = self.posterior(x)
        return mean, np.sqrt(var)

    def posterior(self, x: Array) -> tuple[Array, Array, Array]:
        """Mean and variance at ``x`` (targets' units), and ``L^-1 k(X, x)``, which
        ``variance_after`` reuses to account for more points without refactoring."""
        ks = self._kernel(x, self.x_)
        mean = ks @ self.alpha_
        v = solve_triangular(self.chol_, ks.T, lower=True, check_finite=False)
        prior = np.exp(self.log_signal) + np.exp(self.log_linear) * ((x - 0.5) ** 2).sum(1)
        var = np.maximum(prior - (v * v).sum(0), 1e-12)
        return self.mean_ + self.scale_ * mean, self.scale_**2 * var, v

    def variance_after(self, x: Array, v: Array, var: Array, extra: Array) -> Array:
        """Posterior variance at ``x`` (with ``v``, ``var`` from ``posterior(x)``) once the
        points ``extra`` are observed too, whatever their values: a rank-k update."""
        ke = self._kernel(extra, self.x_)
        ve = solve_triangular(self.chol_, ke.T, lower=True, check_finite=False)
        cross = self._kernel(x, extra) - v.T @ ve  # posterior covariance (x, extra)
        inner = self._kernel(extra, extra) - ve.T @ ve
        inner[np.diag_indices_from(inner)] += np.exp(self.log_noise) + 1e-9
        solved = np.linalg.solve(inner, cross.T)  # (k, len(x))
        drop = (cross * solved.T).sum(1)
        return np.maximum(var - self.scale_**2 * drop, 1e-12 * self.scale_**2)

    # -- internals -------------------------------------------------------------------------

    def _kernel(self, a: Array, b: Array) -> Array:
        """Matérn 5/2 plus a linear term on centred features: the metrics are close to
        linear in the log of the parallel degrees (memory ~ 1/tp), which a stationary
        kernel alone learns only from many points."""
        r = np.sqrt(_scaled_sq_distances(a, b, np.exp(-self.log_length)))
        linear = np.exp(self.log_linear) * ((a - 0.5) @ (b - 0.5).T)
        return np.exp(self.log_signal) * _matern52(r) + linear

    def _factor(self, z: Array) -> None:
        k = self._kernel(self.x_, self.x_)
        k[np.diag_indices_from(k)] += np.exp(self.log_noise) + 1e-9
        self.chol_ = cholesky(k, lower=True, check_finite=False)
        self.alpha_ = cho_solve((self.chol_, True), z, check_finite=False)

    def _optimise(self, x: Array, z: Array) -> None:
        """MAP hyperparameters from two starts: the previous fit (warm, usually close) and
        the prior's centre (so one bad fit is not inherited batch after batch)."""
        dims = x.shape[1]
        bounds = [LOG_LENGTH_BOUNDS] * dims + [
            LOG_SIGNAL_BOUNDS,
            LOG_NOISE_BOUNDS,
            LOG_LINEAR_BOUNDS,
        ]
        low, high = [b[0] for b in bounds], [b[1] for b in bounds]
        starts = [self._theta(), GaussianProcess.new(dims)._theta()]
        diff2 = (x[:, None, :] - x[None, :, :]) ** 2  # (n, n, dims), reused by every step
        dot = (x - 0.5) @ (x - 0.5).T
        best: tuple[float, Array] | None = None
        for start in starts:
            result = minimize(
                _neg_log_posterior,
                np.clip(start, low, high),
                args=(diff2, dot, z),
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                options={"maxiter": MAX_ITERATIONS},
            )
            if np.all(np.isfinite(result.x)) and (best is None or result.fun < best[0]):
                best = (float(result.fun), result.x)
        if best is not None:
            theta = best[1]
            self.log_length = theta[:dims]
            self.log_signal, self.log_noise = float(theta[dims]), float(theta[dims + 1])
            self.log_linear = float(theta[dims + 2])

    def _theta(self) -> Array:
        return np.concatenate([self.log_length, [self.log_signal, self.log_noise, self.log_linear]])


def _neg_log_posterior(theta: Array, diff2: Array, dot: Array, z: Array) -> tuple[float, Array]:
    """Negative log marginal likelihood plus a log-normal prior on the length scales, and
    its gradient with respect to (log lengths, log signal, noise and linear variances)."""
    dims = diff2.shape[2]
    log_length, log_signal, log_noise = theta[:dims], theta[dims], theta[dims + 1]
    scaled = diff2 * np.exp(-2.0 * log_length)  # (n, n, dims)
    r = np.sqrt(scaled.sum(2))
    e = np.exp(-SQRT5 * r)
    signal = math.exp(log_signal)
    k = signal * (1.0 + SQRT5 * r + (5.0 / 3.0) * r * r) * e
    noise = math.exp(log_noise)
    linear = math.exp(theta[dims + 2]) * dot
    kn = k + linear + (noise + 1e-9) * np.eye(len(z))
    try:
        chol = cholesky(kn, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        return 1e10, np.zeros_like(theta)
    alpha = cho_solve((chol, True), z, check_finite=False)
    nll = 0.5 * z @ alpha + np.log(np.diag(chol)).sum() + 0.5 * len(z) * math.log(2 * math.pi)
    inner = cho_solve((chol, True), np.eye(len(z)), check_finite=False) - np.outer(alpha, alpha)
    common = signal * (5.0 / 3.0) * (1.0 + SQRT5 * r) * e  # dk/dlog l_d = common * scaled_d
    grad_length = 0.5 * np.einsum("ij,ijd->d", inner * common, scaled)
    grad_signal = 0.5 * float((inner * k).sum())
    grad_noise = 0.5 * noise * float(np.trace(inner))
    grad_linear = 0.5 * float((inner * linear).sum())
    deviation = (log_length - LENGTH_PRIOR_MEAN) / LENGTH_PRIOR_SD
    nll += 0.5 * float(deviation @ deviation)
    grad_length = grad_length + deviation / LENGTH_PRIOR_SD
    return float(nll), np.concatenate([grad_length, [grad_signal, grad_noise, grad_linear]])
