"""Running one tuning job: plan, evaluate (exhaustively or by Optuna ask/tell), front, pick.

The driver owns the Optuna study and is the only writer of a job's trials; results go to a
sink (the database, or a list for the CLI) one finished batch at a time, so progress is live.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from itertools import islice
from typing import Any
from typing import Protocol

import optuna

from results.records import Recommendation
from results.records import TrialRecord
from search_spaces.config import config_hash
from search_spaces.space import KnobConfig
from search_spaces.space import SearchSpace
from tuner.dispatch import DispatchingExecutor
from tuner.dispatch import Executor
from tuner.evaluation import Outcome
from tuner.kinds import AnyJobSpec
from tuner.kinds import dispatch_for
from tuner.kinds import evaluator_for
from tuner.kinds import evaluator_version
from tuner.kinds import kind_of
from tuner.recommend import front_of
from tuner.recommend import recommend
from tuner.study import make_sampler
from tuner.study import make_study
from tuner.study import rehydrate
from tuner.study import stored_params

CHUNK_SIZE = 128  # configurations per executor task: amortises Ray's ~1 ms per-task overhead


class SpaceEmptyError(ValueError):
    """No configuration of the space passes the validity rules."""


class TrialSink(Protocol):
    def add(self, trials: list[TrialRecord]) -> None: ...

    def should_stop(self) -> bool: ...


@dataclass
class ListSink:
    """Collects trials in memory (the CLI, tests)."""

    trials: list[TrialRecord] = field(default_factory=list)
    on_add: Callable[[list[TrialRecord]], None] | None = None

    def add(self, trials: list[TrialRecord]) -> None:
        self.trials.extend(trials)
        if self.on_add:
            self.on_add(trials)

    def should_stop(self) -> bool:
        return False


@dataclass(frozen=True)
class SearchPlan:
    mode: str  # "exhaustive" | "sampled"
    space_size: int  # valid points (capped at exhaustive_limit + 1 when sampled)
    trials_planned: int


@dataclass
class SearchResult:
    plan: SearchPlan
    trials: list[TrialRecord]
    front: list[TrialRecord]
    recommendation: Recommendation | None
    sampler: dict[str, Any]
    cancelled: bool = False
    summary: dict[str, Any] = field(default_factory=dict)  # e.g. hybrid prediction error


def build_space(spec: AnyJobSpec) -> SearchSpace:
    """The job's search space; raises UnsupportedError for a kind/evaluator not offered."""
    evaluator_for(spec)
    return kind_of(spec).build_space(spec)


def plan_search(spec: AnyJobSpec, space: SearchSpace) -> SearchPlan:
    """Exhaustive when the valid space is small enough, else sampled within the budget."""
    limit = spec.budget.exhaustive_limit
    size = space.count_valid(cap=limit + 1)
    if size == 0:
        raise SpaceEmptyError(space.explain_empty())
    if size <= limit:
        return SearchPlan("exhaustive", size, size)
    return SearchPlan("sampled", size, spec.budget.trials)


def _chunks(items: list[dict[str, Any]], size: int = CHUNK_SIZE) -> list[list[dict[str, Any]]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _record(
    number: int, config: dict[str, Any], key: str, eval_key: str, outcome: Outcome, evaluator: str
) -> TrialRecord:
    return TrialRecord(
        number=number,
        config=config,
        config_key=key,
        eval_key=eval_key,
        state="failed" if outcome.error else "complete",
        metrics=outcome.metrics,
        feasible=outcome.feasible and not outcome.error,
        violations=outcome.violations,
        details={**outcome.details, "constraints": outcome.constraints},
        duration_s=outcome.duration_s,
        evaluator=evaluator,
        error=outcome.error,
    )


class _Evaluated:
    """Trials of the job so far, by configuration key; hands out trial numbers."""

    def __init__(self, spec: AnyJobSpec, existing: Iterable[TrialRecord]) -> None:
        self.by_key: dict[str, TrialRecord] = {}
        self.next_number = 0
        self.evaluator = evaluator_version(spec)
        self.ground = evaluation_ground(spec)
        self.reuse = dispatch_for(spec).reuse  # e.g. a user's command may change between jobs
        for t in existing:
            self.by_key.setdefault(t.config_key, t)
            self.next_number = max(self.next_number, t.number + 1)

    def take_number(self) -> int:
        self.next_number += 1
        return self.next_number - 1

    def eval_key(self, config_key: str) -> str:
        return config_hash({"ground": self.ground, "config": config_key})


def evaluation_ground(spec: AnyJobSpec) -> str:
    """Hash of everything besides the knobs that an evaluation depends on."""
    data = spec.model_dump(mode="json", include={"model", "cluster", "workload", "evaluator"})
    return config_hash({**data, "evaluator_version": evaluator_version(spec)})


def _reuse(todo: dict[str, KnobConfig], state: _Evaluated, sink: TrialSink) -> list[TrialRecord]:
    """Trials copied from earlier evaluations of the same ground (any job), if the sink
    can look them up; they leave ``todo`` and are stored like fresh ones."""
    lookup = getattr(sink, "lookup", None) if state.reuse else None
    if lookup is None or not todo:
        return []
    found: dict[str, TrialRecord] = lookup([state.eval_key(k) for k in todo])
    records = []
    for key in list(todo):
        cached = found.get(state.eval_key(key))
        if cached is None:
            continue
        config = todo.pop(key).model_dump(mode="json")
        details = {**cached.details, "reused": {"eval_key": cached.eval_key}}
        record = cached.model_copy(
            update={"number": state.take_number(), "config": config, "details": details}
        )
        state.by_key[key] = record
        records.append(record)
    if records:
        sink.add(records)
    return records


def _evaluate(
    executor: Executor,
    spec_json: str,
    configs: list[KnobConfig],
    state: _Evaluated,
    sink: TrialSink,
) -> Iterator[list[TrialRecord]]:
    """Evaluate configurations not seen before (reusing stored evaluations of the same
    ground when the sink offers them); store and yield each finished chunk."""
    todo: dict[str, KnobConfig] = {}
    for c in configs:
        key = c.key()
        if key not in state.by_key:
            todo.setdefault(key, c)
    reused = _reuse(todo, state, sink)
    if reused:
        yield reused
    dumped = [c.model_dump(mode="json") for c in todo.values()]
    keys = list(todo)
    size = executor.chunk_size if isinstance(executor, DispatchingExecutor) else CHUNK_SIZE
    chunks = _chunks(dumped, size)
    for index, outcomes in executor.run(spec_json, chunks):
        start = index * size
        records = []
        for offset, raw in enumerate(outcomes):
            key = keys[start + offset]
            outcome = Outcome.model_validate(raw)
            number = state.take_number()
            record = _record(
                number, dumped[start + offset], key, state.eval_key(key), outcome, state.evaluator
            )
            state.by_key[key] = record
            records.append(record)
        sink.add(records)
        yield records


def run_search(
    spec: AnyJobSpec,
    executor: Executor,
    sink: TrialSink,
    existing: Iterable[TrialRecord] = (),
    progress: Callable[[int, int], None] | None = None,
) -> SearchResult:
    """Run a tuning job to its end (or until the sink asks to stop)."""
    space = build_space(spec)
    plan = plan_search(spec, space)
    existing = list(existing)
    state = _Evaluated(spec, existing)
    dispatching = DispatchingExecutor.for_spec(spec, executor)
    spec_json = json.dumps(spec.model_dump(mode="json"))
    _, sampler_info = make_sampler(spec.sampler, spec.budget.batch(), space)
    cancelled = False
    if plan.mode == "exhaustive":
        sampler_info = {"name": "exhaustive", "optuna_version": optuna.__version__}
        configs = list(space.enumerate())
        done = sum(1 for c in configs if c.key() in state.by_key)
        for records in _evaluate(dispatching, spec_json, configs, state, sink):
            done += len(records)
            if progress:
                progress(done, plan.trials_planned)
            if sink.should_stop():
                cancelled = True
                break
    else:
        cancelled = _sampled_search(
            spec, space, plan, dispatching, spec_json, state, sink, progress
        )
    trials = sorted(state.by_key.values(), key=lambda t: t.number)
    ranked, summary = trials, {}
    finish = dispatch_for(spec).finish  # a phase after the search (hybrid: profile the front)
    if finish is not None and not cancelled:
        trials, ranked, summary = finish(spec, executor, sink, trials, existing, state)
    front = front_of(ranked, spec.objectives)
    return SearchResult(
        plan=plan,
        trials=trials,
        front=front,
        recommendation=_recommend(spec, front, ranked),
        sampler=sampler_info,
        cancelled=cancelled,
        summary=summary,
    )


def _recommend(
    spec: AnyJobSpec, front: list[TrialRecord], trials: list[TrialRecord]
) -> Recommendation | None:
    """The kind's own pick when it has one (inference: SLOs, cost), else the default rule."""
    custom = kind_of(spec).recommend
    if custom is not None:
        rec: Recommendation | None = custom(spec, front, trials)
        return rec
    return recommend(front, spec.objectives, trials)


def _values(record: TrialRecord, spec: AnyJobSpec) -> list[float] | None:
    if record.state != "complete":
        return None
    return [record.metrics[o.metric] for o in spec.objectives]


class _Explorer:
    """Unseen valid points to enqueue when the sampler stalls.

    On a discrete space a converged sampler keeps proposing points it has already seen (or
    invalid ones); then a batch of random unseen valid points, drawn from the enumeration
    with the job's seed, keeps the budget moving while Optuna stays the one asking.
    """

    SAMPLE_CAP = 200_000

    def __init__(self, space: SearchSpace, seed: int) -> None:
        self.space = space
        self.rng = random.Random(seed)
        self.pool: list[KnobConfig] | None = None

    def enqueue(
        self, study: optuna.Study, dists: dict[str, Any], seen: dict[str, TrialRecord], n: int
    ) -> int:
        if self.pool is None:
            self.pool = list(islice(self.space.enumerate(), self.SAMPLE_CAP))
            self.rng.shuffle(self.pool)
        added = 0
        while self.pool and added < n:
            config = self.pool.pop()
            if config.key() in seen:
                continue
            params = stored_params(dists, config.model_dump(mode="json"), self.space)
            if params is None:
                continue
            study.enqueue_trial(params)
            added += 1
        return added


def _sampled_search(
    spec: AnyJobSpec,
    space: SearchSpace,
    plan: SearchPlan,
    executor: Executor,
    spec_json: str,
    state: _Evaluated,
    sink: TrialSink,
    progress: Callable[[int, int], None] | None,
) -> bool:
    """Optuna ask/tell in batches. Invalid points are told PRUNED and never dispatched;
    repeated points reuse their first evaluation; a stalled sampler gets unseen points
    enqueued. Returns True when stopped early."""
    sampler, _ = make_sampler(spec.sampler, spec.budget.batch(), space)
    study = make_study(spec.objectives, sampler)
    dists = space.to_optuna()
    for t in state.by_key.values():
        rehydrate(study, dists, t.config, _values(t, spec), t.details.get("constraints"), space)
    budget = spec.budget.trials
    explorer = _Explorer(space, spec.sampler.seed + len(state.by_key))
    while len(state.by_key) < budget:
        if sink.should_stop():
            return True
        n = min(spec.budget.batch(), budget - len(state.by_key))
        before = len(state.by_key)
        _ask_evaluate_tell(study, dists, space, n, executor, spec_json, state, sink, spec)
        if progress:
            progress(min(len(state.by_key), budget), budget)
        stalled = len(state.by_key) - before < max(1, n // 4)
        if stalled and explorer.enqueue(study, dists, state.by_key, n) == 0:
            break  # every valid point has been evaluated
    return False


def _ask_evaluate_tell(
    study: optuna.Study,
    dists: dict[str, Any],
    space: SearchSpace,
    n: int,
    executor: Executor,
    spec_json: str,
    state: _Evaluated,
    sink: TrialSink,
    spec: AnyJobSpec,
) -> None:
    """One batch: ask ``n`` points, prune invalid ones, evaluate the new ones, tell all."""
    configs: list[tuple[optuna.Trial, KnobConfig]] = []
    for trial in [study.ask(dists) for _ in range(n)]:
        config = space.decode(trial.params)
        if space.violations(config):
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        configs.append((trial, config))
    for _ in _evaluate(executor, spec_json, [c for _, c in configs], state, sink):
        pass
    for trial, config in configs:
        _tell(study, trial, state.by_key[config.key()], spec)


def _tell(study: optuna.Study, trial: optuna.Trial, record: TrialRecord, spec: Any) -> None:
    values = _values(record, spec)
    if values is None:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return
    for name, value in (record.details.get("constraints") or {}).items():
        trial.set_constraint(name, float(value))
    study.tell(trial, values)
