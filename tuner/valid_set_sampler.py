"""Bayesian optimisation over the valid configurations themselves: paretune's default sampler.

Why not TPE or Optuna's GP: a deployment space is discrete and mostly invalid (divisibility,
GPU counts, precision support), so a sampler that proposes in the box of all knob values
spends its asks on points the rules reject, and learns little from them. paretune can
enumerate the valid points, so this sampler scores those directly:

1. Candidates: the valid configurations (a uniform sample of ``CANDIDATE_CAP`` of them on
   larger spaces), encoded as features: log2 of numeric knobs, 0/1 flags, one-hot
   categories, scaled to [0, 1].
2. A first batch spread over the space (greedy max-min distance from a random start).
3. Then one Gaussian process per objective (log of positive metrics) and per constraint,
   refitted once per told batch, and each ask takes the unseen candidate with the highest
   expected hypervolume improvement (two objectives; Monte-Carlo over the posterior) or the
   expected improvement of a random Chebyshev scalarisation (one or three or more objectives),
   times the probability that it meets the constraints.
4. Asks within one batch see the batch's pending points as fantasies at their predicted
   values (the Kriging believer), which spreads a batch along the front.

Cost is kept to tens of milliseconds an ask: spaces of more than ``2 * POOL_SIZE`` candidates
score a random ``POOL_SIZE`` of them per batch plus every candidate one or two knob changes
away from the current front, where the front usually moves; the surrogates condition on at
most ``FIT_CAP`` trials and refit their hyperparameters only as the data grows; the asks after
a batch's first rescore only its ``RESCORE_TOP`` best candidates.

Measured against the exhaustive front by ``benchmarks/search_efficiency.py``. Known weakness:
a region whose first few points looked poor is revisited late, since nothing but its
uncertainty speaks for it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from collections.abc import Sequence
from itertools import islice
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial
from optuna.trial import TrialState
from scipy.special import ndtr
from threadpoolctl import threadpool_limits

from search_spaces.config import flatten_config
from search_spaces.space import SearchSpace
from tuner.gp_surrogate import Array
from tuner.gp_surrogate import GaussianProcess
from tuner.pareto import pareto_indices
from tuner.study import stored_params

SAMPLER_VERSION = 1  # raise when a change alters the proposals for the same seed
CANDIDATE_CAP = 100_000  # candidates scored (about 6 s to encode at the cap)
ENUMERATION_CAP = 1_000_000  # valid points enumerated to sample them from (about 4 s)
POOL_SIZE = 16384
NEIGHBOUR_CHANGES = 2  # knobs that may differ from a front point to join the pool
MC_SAMPLES = 48
OPTIMISM = 3.0  # standard deviations: beyond it a candidate's chance of improving is ignored
STARTUP_TRIALS = 8
REFIT_GROWTH = 1.1  # hyperparameters refitted once the told trials grew by 10%; else reused
RESCORE_TOP = 1024  # candidates rescored by the asks after a batch's first
FIT_CAP = 400  # trials the surrogates condition on
NONE_AT = 0.5  # the scaled value of an unused numeric knob: the middle, no side taken


def encode(configs: Sequence[dict[str, Any]]) -> tuple[Array, np.ndarray]:
    """Features in [0, 1] for the surrogate, and integer codes per knob for neighbourhoods.

    Numeric knobs (parallel degrees, batch sizes) are spaced by log2, since their effect is
    multiplicative. Where a knob is ``None`` for some points (a disaggregated pool's knobs on
    an aggregated point, a backend's default batch) those points sit in the middle of its
    scale and a column of their own marks them: at the low end they read as "a small batch",
    which on the serving benchmark hid the best aggregated point for 130-180 trials (found
    within 100 in the middle).
    Booleans are 0/1; other values (names) get one column per value. Constant knobs are
    dropped."""
    flat = [flatten_config(c) for c in configs]
    names = sorted({k for f in flat for k in f})
    columns: list[Array] = []
    codes: list[np.ndarray] = []
    for name in names:
        values = [f.get(name) for f in flat]
        distinct = list(dict.fromkeys(values))
        if len(distinct) < 2:
            continue
        index = {v: i for i, v in enumerate(distinct)}
        codes.append(np.array([index[v] for v in values], dtype=np.int32))
        present = [v for v in distinct if v is not None]
        if present and all(_is_count(v) for v in present):
            missing = np.array([v is None for v in values])
            raw = np.array([1.0 if v is None else float(v) for v in values])
            col = np.log2(raw) if min(present) >= 1 else np.log2(raw + 1.0)
            low, high = col[~missing].min(), col[~missing].max()
            scaled = (col - low) / (high - low) if high > low else np.zeros(len(col))
            columns.append(np.where(missing, NONE_AT, scaled))
            if missing.any():
                columns.append(missing.astype(np.float64))
        elif all(isinstance(v, bool) for v in distinct):
            columns.append(np.array(values, dtype=np.float64))
        else:
            for v in distinct:
                columns.append(np.array([x == v for x in values], dtype=np.float64))
    n = len(configs)
    features = np.stack(columns, axis=1) if columns else np.zeros((n, 1))
    code_matrix = np.stack(codes, axis=1) if codes else np.zeros((n, 1), dtype=np.int32)
    return features, code_matrix


def _is_count(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def _reservoir(points: Iterator[Any], size: int, limit: int, seed: int) -> list[Any]:
    """A uniform sample of ``size`` of the first ``limit`` points (all of them when fewer):
    a prefix of the enumeration would leave the last knobs' values unexplored."""
    rng = random.Random(seed)
    sample: list[Any] = []
    for i, point in enumerate(islice(points, limit)):
        if i < size:
            sample.append(point)
        else:
            j = rng.randrange(i + 1)
            if j < size:
                sample[j] = point
    return sample


def _symlog(values: Array) -> Array:
    """Constraint values with their sign kept (feasible at <= 0) and their tails compressed:
    a configuration 300 GiB over memory should not dwarf one 2 GiB over."""
    out: Array = np.sign(values) * np.log1p(np.abs(values))
    return out


def _loss_signs(study: optuna.Study) -> Array:
    """-1 for maximised objectives, 1 for minimised: values times these are losses."""
    return np.array([-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in study.directions])


class _Candidates:
    """The valid configurations, their Optuna params, features and codes."""

    def __init__(self, space: SearchSpace, dists: dict[str, BaseDistribution], seed: int):
        rng = np.random.default_rng(seed)
        configs = _reservoir(space.enumerate(), CANDIDATE_CAP, ENUMERATION_CAP, seed)
        self.params: list[dict[str, Any]] = []
        self.keys: list[str] = []
        dumped = []
        for config in configs:
            data = config.model_dump(mode="json")
            params = stored_params(dists, data)
            if params is not None:
                self.params.append(params)
                self.keys.append(config.key())
                dumped.append(data)
        self.index = {k: i for i, k in enumerate(self.keys)}
        self.features, self.codes = encode(dumped)
        self.order = rng.permutation(len(self.keys))  # the random part of large pools

    def __len__(self) -> int:
        return len(self.keys)


class _Model:
    """Surrogates fitted on the told trials: objectives (as losses) and constraints."""

    def __init__(
        self,
        x: Array,
        losses: Array,
        constraints: Array,
        previous: _Model | None,
        optimise: bool,
    ) -> None:
        self.losses, self.constraints = losses, constraints
        dims = x.shape[1]

        def fitted(old: list[GaussianProcess], y: Array) -> list[GaussianProcess]:
            """One GP per column, warm-started from the previous batch's."""
            return [
                (old[j] if j < len(old) else GaussianProcess.new(dims)).fit(x, y[:, j], optimise)
                for j in range(y.shape[1])
            ]

        self.objective_gps: list[GaussianProcess] = fitted(
            previous.objective_gps if previous else [], losses
        )
        self.constraint_gps: list[GaussianProcess] = fitted(
            previous.constraint_gps if previous else [], constraints
        )


class _PoolPosterior:
    """Each surrogate's posterior on the pool, computed once per fit; asks within a batch
    only shrink the variances for their pending points (``GaussianProcess.variance_after``),
    and only at the positions ``at`` they rescore."""

    def __init__(self, indices: np.ndarray, x: Array, model: _Model) -> None:
        self.indices, self.x = indices, x
        self.objective = [g.posterior(x) for g in model.objective_gps]
        self.constraint = [g.posterior(x) for g in model.constraint_gps]
        self.first_scores: Array | None = None  # the batch's first ask, for the later ones

    def std(
        self,
        gps: list[GaussianProcess],
        posteriors: list[tuple[Array, Array, Array]],
        extra: Array | None,
        at: np.ndarray,
    ) -> list[Array]:
        out = []
        for gp, (_, var, v) in zip(gps, posteriors, strict=True):
            var = var[at]
            if extra is not None:
                var = gp.variance_after(self.x[at], v[:, at], var, extra)
            out.append(np.sqrt(var))
        return out


class ValidSetSampler(optuna.samplers.BaseSampler):
    """Bayesian optimisation over the enumerated valid points of a paretune space."""

    def __init__(self, space: SearchSpace, seed: int = 0, n_startup: int | None = None) -> None:
        self.space = space
        self.seed = seed
        self.n_startup = n_startup
        self.dists = space.to_optuna()
        self.rng = np.random.default_rng(seed)
        self.fallback = optuna.samplers.RandomSampler(seed=seed)
        self._candidates: _Candidates | None = None
        self._model: _Model | None = None
        self._model_told = -1
        self._optimised_at = 0
        self._pool: _PoolPosterior | None = None
        self._index_cache: dict[int, int | None] = {}

    def settings(self) -> dict[str, Any]:
        """The constants that shape this sampler's proposals, for the job's record."""
        return {
            "version": SAMPLER_VERSION,
            "startup_trials": self.n_startup or STARTUP_TRIALS,
            "candidate_cap": CANDIDATE_CAP,
            "pool_size": POOL_SIZE,
            "fit_cap": FIT_CAP,
            "mc_samples": MC_SAMPLES,
        }

    # -- Optuna's sampler interface ---------------------------------------------------------

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return dict(self.dists)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        with threadpool_limits(limits=1, user_api="blas"):
            return self._sample(study, trial)

    def _sample(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        """The next candidate's params. One BLAS thread: the matrices are a few hundred
        rows, where threads cost more than they save on a busy machine."""
        candidates = self._candidates_for()
        if len(candidates) == 0:
            return {}
        trials = study.get_trials(deepcopy=False)
        seen, pending = self._asked(trials, trial.number)
        unseen = np.setdiff1d(np.arange(len(candidates)), np.fromiter(seen, dtype=np.int64))
        if len(unseen) == 0:
            return {}  # every valid point asked: the driver notices and stops
        told = [
            t
            for t in trials
            if t.state == TrialState.COMPLETE and t.values and np.all(np.isfinite(t.values))
        ]
        told_at = [self._index_of(t) for t in told]
        told = [t for t, i in zip(told, told_at, strict=True) if i is not None]
        startup = self.n_startup or STARTUP_TRIALS
        if len(told) < startup:
            chosen = self._spread(candidates, unseen, seen)
        else:
            chosen = self._acquire(study, candidates, told, unseen, seen, pending)
        return dict(candidates.params[chosen])

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self.fallback.sample_independent(study, trial, param_name, param_distribution)

    # -- helpers ------------------------------------------------------------------------------

    def _candidates_for(self) -> _Candidates:
        if self._candidates is None:
            self._candidates = _Candidates(self.space, self.dists, self.seed)
        return self._candidates

    def _index_of(self, trial: FrozenTrial) -> int | None:
        """The candidate a trial asked for (cached: a trial's params never change)."""
        if trial.number in self._index_cache:
            return self._index_cache[trial.number]
        try:
            config = self.space.decode(trial.params)
        except (ValueError, KeyError):
            return None
        assert self._candidates is not None
        index = self._candidates.index.get(config.key())
        self._index_cache[trial.number] = index
        return index

    def _asked(self, trials: Sequence[FrozenTrial], current: int) -> tuple[set[int], list[int]]:
        """Candidates already asked (any state but pruned), and those of them still pending
        (asked earlier in this batch, not yet told)."""
        seen: set[int] = set()
        pending: list[int] = []
        for t in trials:
            if t.number == current or t.state == TrialState.PRUNED or not t.params:
                continue
            index = self._index_of(t)
            if index is not None:
                seen.add(index)
                if t.state == TrialState.RUNNING:
                    pending.append(index)
        return seen, pending

    def _spread(self, candidates: _Candidates, unseen: np.ndarray, seen: set[int]) -> int:
        """The unseen candidate farthest from every asked one (a random one at first)."""
        if not seen:
            return int(self.rng.choice(unseen))
        sample = unseen if len(unseen) <= POOL_SIZE else self.rng.choice(unseen, POOL_SIZE)
        asked = candidates.features[sorted(seen)]
        x = candidates.features[sample]
        d2 = ((x[:, None, :] - asked[None, :, :]) ** 2).sum(2).min(1)
        return int(sample[int(np.argmax(d2))])

    def _fit(self, study: optuna.Study, candidates: _Candidates, told: list[FrozenTrial]) -> None:
        """Refit the surrogates and their predictions on a pool when trials were told since
        the last fit (once per batch)."""
        if self._model is not None and self._model_told == len(told):
            return
        n_told = len(told)
        told = self._fit_subset(study, told)
        index = np.array([self._index_of(t) for t in told])
        x = candidates.features[index]
        values = np.array([t.values for t in told], dtype=np.float64)
        self._sign = _loss_signs(study)
        self._logged = np.all(values > 0, axis=0)  # positive metrics are modelled in log
        losses = self._sign * np.where(self._logged, np.log(np.abs(values) + 1e-300), values)
        names = sorted({name for t in told for name in t.constraints})
        constraints = _symlog(
            np.array([[float(t.constraints.get(n, 0.0)) for n in names] for t in told])
        ).reshape(len(told), len(names))
        optimise = self._model is None or n_told >= REFIT_GROWTH * self._optimised_at
        self._model = _Model(x, losses, constraints, self._model, optimise)
        self._model_told = n_told
        if optimise:
            self._optimised_at = n_told
        pool = self._make_pool(candidates, index, losses, constraints)
        self._pool = _PoolPosterior(pool, candidates.features[pool], self._model)

    def _fit_subset(self, study: optuna.Study, told: list[FrozenTrial]) -> list[FrozenTrial]:
        """At most ``FIT_CAP`` trials to condition on (exact GP inference is cubic in them):
        the feasible front, the best feasible trials by each objective, then a random rest."""
        if len(told) <= FIT_CAP:
            return told
        feasible = [t for t in told if all(v <= 0 for v in t.constraints.values())]
        signs = _loss_signs(study)
        keep: dict[int, FrozenTrial] = {}
        if feasible:
            scored = [list(signs * np.array(t.values)) for t in feasible]
            for i in pareto_indices(scored)[: FIT_CAP // 4]:
                keep.setdefault(feasible[i].number, feasible[i])
            per_objective = FIT_CAP // (4 * len(signs))
            for j in range(len(signs)):
                for i in np.argsort([row[j] for row in scored])[:per_objective]:
                    keep.setdefault(feasible[i].number, feasible[i])
        rest = [t for t in told if t.number not in keep]
        for i in self.rng.permutation(len(rest))[: FIT_CAP - len(keep)]:
            keep[rest[i].number] = rest[i]
        return sorted(keep.values(), key=lambda t: t.number)

    def _natural(self, modelled: Array) -> Array:
        """Losses from the surrogates' space (log where positive) back to the metrics' own
        scale, negated when maximised: the scale the front's hypervolume is judged on."""
        values = self._sign * modelled
        out: Array = self._sign * np.where(self._logged, np.exp(np.minimum(values, 700)), values)
        return out

    def _make_pool(
        self, candidates: _Candidates, told: np.ndarray, losses: Array, constraints: Array
    ) -> np.ndarray:
        """All candidates for small spaces; else a random slice plus the front's neighbours."""
        n = len(candidates)
        if n <= 2 * POOL_SIZE:
            return np.arange(n)
        start = int(self.rng.integers(0, n))
        random_part = np.take(candidates.order, np.arange(start, start + POOL_SIZE), mode="wrap")
        feasible = np.all(constraints <= 0, axis=1)  # all True without constraints
        if not feasible.any():
            return random_part
        front = told[feasible][pareto_indices(losses[feasible].tolist())]
        changes = (candidates.codes[:, None, :] != candidates.codes[front][None, :, :]).sum(2)
        near = np.nonzero(changes.min(1) <= NEIGHBOUR_CHANGES)[0]
        return np.union1d(random_part, near)

    def _acquire(
        self,
        study: optuna.Study,
        candidates: _Candidates,
        told: list[FrozenTrial],
        unseen: np.ndarray,
        seen: set[int],
        pending: list[int],
    ) -> int:
        """The open pool candidate with the best acquisition. The batch's first ask scores
        the whole pool; later asks (with pending points) rescore its ``RESCORE_TOP`` best,
        since pending points only lower scores."""
        self._fit(study, candidates, told)
        model, pool = self._model, self._pool
        assert model is not None and pool is not None
        open_ = np.nonzero(~np.isin(pool.indices, np.fromiter(seen, dtype=np.int64)))[0]
        if len(open_) == 0:
            return int(self.rng.choice(unseen))
        at = open_
        if pending and pool.first_scores is not None and len(open_) > RESCORE_TOP:
            at = open_[np.argsort(-pool.first_scores[open_], kind="stable")[:RESCORE_TOP]]
        score = self._score(model, pool, candidates, pending, at)
        if not pending:
            pool.first_scores = np.full(len(pool.indices), -np.inf)
            pool.first_scores[at] = score
        return int(pool.indices[at][int(np.argmax(score))])

    def _score(
        self,
        model: _Model,
        pool: _PoolPosterior,
        candidates: _Candidates,
        pending: list[int],
        at: np.ndarray,
    ) -> Array:
        """Acquisition at pool positions ``at``: expected improvement of the front times the
        probability of meeting the constraints (that probability alone until a feasible
        point is known)."""
        extra = candidates.features[pending] if pending else None
        objective_std = pool.std(model.objective_gps, pool.objective, extra, at)
        constraint_std = pool.std(model.constraint_gps, pool.constraint, extra, at)
        p_feasible = np.ones(len(at))
        for (mean, _, _), std in zip(pool.constraint, constraint_std, strict=True):
            p_feasible *= ndtr(-mean[at] / std)
        losses, feasible = model.losses, np.all(model.constraints <= 0, axis=1)
        if pending:  # the Kriging believer: pending points count as their predicted values
            where = candidates.features[pending]
            guess = np.stack([g.predict(where)[0] for g in model.objective_gps], axis=1)
            ok = np.ones(len(pending), dtype=bool)
            for g in model.constraint_gps:
                ok &= g.predict(where)[0] <= 0
            losses, feasible = np.vstack([losses, guess]), np.concatenate([feasible, ok])
        if not feasible.any():
            return p_feasible
        mean = np.stack([m[at] for m, _, _ in pool.objective], axis=1)
        std = np.stack(objective_std, axis=1)
        front = losses[feasible]
        if losses.shape[1] == 2:
            observed = model.losses[np.all(model.constraints <= 0, axis=1)]
            observed = observed if len(observed) else front
            gain = self._ehvi_2d(mean, std, self._natural(front), self._natural(observed))
        else:
            gain = self._scalarised_ei(mean, std, front)
        score: Array = gain * p_feasible
        if not np.any(score > 0):  # nothing to gain by the model's account: explore
            score = 1e-12 * p_feasible * std.sum(1)
        return score

    def _ehvi_2d(self, mean: Array, std: Array, front: Array, observed: Array) -> Array:
        """Monte-Carlo expected hypervolume improvement of each candidate over ``front``
        (two losses, on the metrics' own scale; ``mean`` and ``std`` in the surrogates'),
        the reference point 10% beyond the worst feasible observation."""
        span = np.maximum(observed.max(0) - observed.min(0), 1e-9)
        reference = observed.max(0) + 0.1 * span
        points = front[pareto_indices(front.tolist())]
        points = points[np.argsort(points[:, 0])]
        points = points[np.all(points < reference, axis=1)]
        # The region not dominated by the front, as vertical strips [a, b) x (-inf, c).
        a = np.concatenate([[-np.inf], points[:, 0]])
        b = np.concatenate([points[:, 0], [reference[0]]])
        c = np.concatenate([[reference[1]], points[:, 1]])
        b = np.minimum(b, reference[0])

        def improvement(p0: Array, p1: Array) -> Array:
            width = np.clip(b - np.maximum(a, p0[..., None]), 0, None)
            return (width * np.clip(c - p1[..., None], 0, None)).sum(-1)

        gain = np.zeros(len(mean))
        optimistic = self._natural(mean - OPTIMISM * std)  # cannot improve even so: 0
        hopeful = np.nonzero(improvement(optimistic[:, 0], optimistic[:, 1]) > 0)[0]
        if len(hopeful):
            z = self.rng.standard_normal((MC_SAMPLES, 1, 2))
            samples = self._natural(mean[None, hopeful] + std[None, hopeful] * z)
            gain[hopeful] = improvement(samples[..., 0], samples[..., 1]).mean(0)
        return gain

    def _scalarised_ei(self, mean: Array, std: Array, front: Array) -> Array:
        """Expected improvement of a random Chebyshev scalarisation (ParEGO's acquisition)."""
        low, high = front.min(0), front.max(0)
        span = np.maximum(high - low, 1e-9)
        weights = self.rng.dirichlet(np.ones(mean.shape[1]))
        best = np.max(weights * (front - low) / span, axis=1).min()
        z = self.rng.standard_normal((MC_SAMPLES, 1, mean.shape[1]))
        samples = (mean[None] + std[None] * z - low) / span
        scalar = np.max(weights * samples, axis=2)
        gain: Array = np.clip(best - scalar, 0, None).mean(0)
        return gain
