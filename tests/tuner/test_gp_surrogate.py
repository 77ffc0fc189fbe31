"""The sampler's Gaussian process: the hyperparameter gradient is the true gradient, the
rank-k variance update equals conditioning from scratch, and it learns a real function."""

from __future__ import annotations

import numpy as np
from scipy.optimize import approx_fprime

from tuner.gp_surrogate import GaussianProcess
from tuner.gp_surrogate import _neg_log_posterior


def _data(n: int, dims: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random((n, dims))
    y = np.sin(3 * x[:, 0]) + 2 * x[:, 1] - x[:, 2] ** 2
    return x, y


def test_gradient_matches_finite_differences() -> None:
    x, y = _data(25, 3)
    z = (y - y.mean()) / y.std()
    diff2 = (x[:, None, :] - x[None, :, :]) ** 2
    dot = (x - 0.5) @ (x - 0.5).T
    theta = np.array([-0.4, 0.3, -1.0, 0.2, -5.0, -1.5])
    _, analytic = _neg_log_posterior(theta, diff2, dot, z)
    numeric = approx_fprime(theta, lambda t: _neg_log_posterior(t, diff2, dot, z)[0], 1e-6)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-4, atol=1e-4)


def test_variance_after_equals_refitting_with_the_extra_points() -> None:
    x, y = _data(30, 3)
    gp = GaussianProcess.new(3).fit(x[:8], y[:8])
    probe = x[20:]
    mean, var, v = gp.posterior(probe)
    extra = x[20:24]
    updated = gp.variance_after(probe, v, var, extra)
    refit = GaussianProcess(gp.log_length, gp.log_signal, gp.log_noise, gp.log_linear)
    refit.mean_, refit.scale_ = gp.mean_, gp.scale_  # same standardisation as the original
    refit.x_ = np.vstack([x[:8], extra])
    refit._factor((np.concatenate([y[:8], mean[:4]]) - gp.mean_) / gp.scale_)
    _, refit_var, _ = refit.posterior(probe)
    np.testing.assert_allclose(updated, refit_var, rtol=1e-5, atol=1e-9)
    assert np.all(updated[:4] < 0.01 * var[:4])  # observed points lose their uncertainty
    assert np.all(updated <= var + 1e-12)


def test_learns_a_smooth_function_and_knows_where_it_is_unsure() -> None:
    x, y = _data(80, 3, seed=1)
    test_x, test_y = _data(200, 3, seed=2)
    gp = GaussianProcess.new(3).fit(x, y)
    mean, std = gp.predict(test_x)
    rmse = float(np.sqrt(((mean - test_y) ** 2).mean()))
    assert rmse < 0.05 * float(test_y.std())
    far = np.full((1, 3), 3.0)  # far outside the data
    assert gp.predict(far)[1][0] > 10 * float(std.mean())
