"""Job routes: submit, list, inspect, cancel; trials, Pareto front, recommendation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated
from typing import Any
from typing import Literal

from fastapi import APIRouter
from fastapi import Body
from fastapi import HTTPException
from fastapi import Query
from fastapi import Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from api.deps import ReadCacheDep
from api.deps import RepoDep
from api.deps import RunnerDep
from api.deps import SessionFactoryDep
from api.deps import SettingsDep
from api.deps import WriteAccess
from api.errors import SpecError
from api.job_json import job_json
from api.job_json import job_list_json
from api.read_cache import CachedBody
from api.read_cache import JobVersion
from api.read_cache import job_version
from api.schemas import JobList
from api.schemas import ObjectivePublic
from api.schemas import ParetoPublic
from api.schemas import RecommendationPublic
from api.schemas import TrialPage
from api.schemas import error_responses
from api.trial_pages import trial_page_json
from results.db import session_scope
from results.records import JobRecord
from results.records import TrialRecord
from results.repository import JobRepository
from search_spaces.evaluators import CommandEvaluatorSpec
from search_spaces.job_spec import parse_job_spec
from search_spaces.objectives import INFERENCE_METRICS
from search_spaces.objectives import TRAINING_METRICS
from search_spaces.space import SearchSpace
from tuner.command_allowlist import resolve_command
from tuner.command_allowlist import unsafe_values
from tuner.driver import SpaceEmptyError
from tuner.driver import build_space
from tuner.driver import plan_search
from tuner.exporters import export
from tuner.kinds import AnyJobSpec
from tuner.kinds import UnsupportedError
from tuner.kinds import kind_of

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
MAX_INDEX = 2**31 - 1  # offsets and trial numbers: the databases' INTEGER
ORDERABLE = ["number", *sorted(set(TRAINING_METRICS) | set(INFERENCE_METRICS))]


def validate_spec(
    raw: dict[str, Any],
    max_trials: int | None = None,
    allow_command: bool = False,
    command_templates: Mapping[str, str] | None = None,
) -> AnyJobSpec:
    """Parse a submitted spec and make sure its space has a valid point (else 422); with
    ``max_trials``, refuse jobs that would run more trials (see ``_check_space``). The
    command evaluator runs programs: refused unless the server allows it, and then only
    its allow-listed ``command_templates`` (``tuner.command_allowlist``)."""
    try:
        spec = parse_job_spec(raw)
    except ValidationError as exc:
        raise SpecError.from_validation(exc) from None
    if isinstance(spec.evaluator, CommandEvaluatorSpec) and allow_command:
        spec = _allow_listed(spec, command_templates or {})
    elif spec.evaluator.type == "command":
        raise SpecError(
            [
                (
                    "evaluator.type",
                    "the command evaluator is off on this server (it runs programs); its "
                    "operator can allow-list command templates (allow_command_evaluator, "
                    "`paretune serve --command-template NAME=TEMPLATE`), or run the job "
                    "locally with `paretune tune`",
                )
            ]
        )
    try:
        space = build_space(spec)
    except UnsupportedError as exc:
        field = "kind" if "kind" in str(exc) else "evaluator"
        raise SpecError([(field, str(exc))]) from None
    if isinstance(spec.evaluator, CommandEvaluatorSpec):
        unsafe = unsafe_values(spec, space.knobs)
        if unsafe:
            raise SpecError(unsafe)
    _check_space(spec, space, max_trials)
    return spec


def _allow_listed(spec: AnyJobSpec, templates: Mapping[str, str]) -> AnyJobSpec:
    """The spec with its allow-listed command filled in, or a 422 naming what to change."""
    assert isinstance(spec.evaluator, CommandEvaluatorSpec)
    evaluator, errors = resolve_command(spec.evaluator, templates)
    if errors:
        raise SpecError(errors)
    return spec.model_copy(update={"evaluator": evaluator})


def _over(max_trials: int) -> str:
    return f"over this server's limit of {max_trials} trials per job (max_trials_per_job)"


def _check_space(spec: AnyJobSpec, space: SearchSpace, max_trials: int | None) -> None:
    """422 when the space has no valid point, or when the job would run more than
    ``max_trials`` trials: a sampled budget over it, or an exhaustive evaluation of a space
    bigger than it. Counts at most ``max_trials + 1`` points either way."""
    limit = spec.budget.exhaustive_limit
    capped = limit if max_trials is None else min(limit, max_trials)
    budget = spec.budget.model_copy(update={"exhaustive_limit": capped})
    try:
        plan = plan_search(spec.model_copy(update={"budget": budget}), space)
    except SpaceEmptyError as exc:
        raise SpecError([("space", str(exc))]) from None
    if plan.mode == "exhaustive" or max_trials is None:
        return
    errors = []
    if spec.budget.trials > max_trials:
        errors.append(("budget.trials", f"{spec.budget.trials} is {_over(max_trials)}"))
    if limit > capped:
        errors.append(
            (
                "budget.exhaustive_limit",
                f"the space has more than {capped} valid points: evaluating up to {limit} "
                f"of them exhaustively is {_over(capped)}; set exhaustive_limit to "
                f"{capped} or less to sample the space instead",
            )
        )
    if errors:
        raise SpecError(errors)


def _check_queue(repo: JobRepository, max_jobs: int) -> None:
    """429 while the server holds ``max_jobs`` queued or running jobs."""
    active = repo.count_jobs("queued") + repo.count_jobs("running")
    if active >= max_jobs:
        raise HTTPException(
            429,
            f"this server already has {active} jobs queued or running, its limit "
            f"(max_queued_jobs={max_jobs}); wait for some to finish or cancel one",
            headers={"Retry-After": "30"},
        )


def _version_or_404(session: Session, job_id: str) -> JobVersion:
    version = job_version(session, job_id)
    if version is None:
        raise HTTPException(404, f"no job with id '{job_id}'; GET /v1/jobs lists them")
    return version


def _job_or_404(repo: JobRepository, job_id: str) -> JobRecord:
    job = repo.get_job(job_id)
    if job is None:
        raise HTTPException(404, f"no job with id '{job_id}'; GET /v1/jobs lists them")
    return job


@router.post(
    "",
    status_code=202,
    response_model=JobRecord,
    dependencies=[WriteAccess],
    responses=error_responses(400, 401, 413, 429, 503),
)
def submit_job(
    spec_doc: Annotated[dict[str, Any], Body(description="A job spec (see DESIGN.md).")],
    repo: RepoDep,
    runner: RunnerDep,
    settings: SettingsDep,
) -> JobRecord:
    spec = validate_spec(
        spec_doc,
        settings.max_trials_per_job,
        settings.allow_command_evaluator,
        settings.command_templates,
    )
    _check_queue(repo, settings.max_queued_jobs)
    job = repo.create_job(
        spec.model_dump(mode="json"),
        spec.name or f"{spec.model.name} on {spec.cluster.num_gpus}x {spec.cluster.gpu.id}",
        spec.kind,
    )
    repo.session.commit()
    runner.wake()
    return job


def deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``changes`` over ``base``: nested objects merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


@router.post(
    "/{job_id}/copy",
    status_code=202,
    response_model=JobRecord,
    dependencies=[WriteAccess],
    responses=error_responses(400, 401, 404, 413, 429, 503),
)
def copy_job(
    job_id: str,
    changes: Annotated[
        dict[str, Any], Body(description="Spec fields to change; objects merge key by key.")
    ],
    repo: RepoDep,
    runner: RunnerDep,
    settings: SettingsDep,
) -> JobRecord:
    """Submit a new job as a copy of another with changes (stored evaluations are reused)."""
    source = _job_or_404(repo, job_id)
    base = {k: v for k, v in source.spec.items() if k != "name"}
    merged = deep_merge(base, {"name": f"copy of {source.name}", **changes})
    return submit_job(merged, repo, runner, settings)


@router.get("", response_model=JobList, responses=error_responses(503))
def list_jobs(
    factory: SessionFactoryDep,
    status: Annotated[
        Literal["queued", "running", "succeeded", "failed", "cancelled"] | None, Query()
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_INDEX)] = 0,
) -> Response:
    with session_scope(factory) as session:
        body = job_list_json(session, status=status, limit=limit, offset=offset)
    return Response(body, media_type="application/json")


@router.get("/{job_id}", response_model=JobRecord, responses=error_responses(404, 503))
def get_job(job_id: str, factory: SessionFactoryDep) -> Response:
    with session_scope(factory) as session:
        body = job_json(session, job_id)
    if body is None:
        raise HTTPException(404, f"no job with id '{job_id}'; GET /v1/jobs lists them")
    return Response(body, media_type="application/json")


@router.post(
    "/{job_id}/cancel",
    response_model=JobRecord,
    dependencies=[WriteAccess],
    responses=error_responses(401, 404, 503),
)
def cancel_job(job_id: str, repo: RepoDep) -> JobRecord:
    _job_or_404(repo, job_id)
    return repo.cancel(job_id)


@router.get(
    "/{job_id}/trials",
    response_model=TrialPage,
    responses={304: {"description": "The client's copy (If-None-Match) is current."},
               **error_responses(404, 503)},
)  # fmt: skip
def list_trials(
    job_id: str,
    request: Request,
    factory: SessionFactoryDep,
    cache: ReadCacheDep,
    state: Annotated[Literal["complete", "failed", "pruned"] | None, Query()] = None,
    after: Annotated[
        int | None, Query(ge=-1, le=MAX_INDEX, description="Only trials numbered above.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_INDEX)] = 0,
    order_by: Annotated[
        str,
        Query(
            description="number or a metric name (trials without it sort last)",
            json_schema_extra={"enum": ORDERABLE},
        ),
    ] = "number",
    descending: bool = False,
) -> Response:
    """A page of trials; a finished job's pages come from the read cache. ETag and
    If-None-Match: 304 when the client's page is current."""
    if order_by not in ORDERABLE:
        with session_scope(factory) as session:
            _version_or_404(session, job_id)
        raise SpecError([("order_by", f"must be one of: {', '.join(ORDERABLE)}")], "query")
    with session_scope(factory) as session:
        version = _version_or_404(session, job_id)

        def build() -> CachedBody:
            return CachedBody.of(
                trial_page_json(session, job_id, state, after, limit, offset, order_by, descending)
            )

        key = ("trials", job_id, state, after, limit, offset, order_by, descending)
        body = cache.read(version, key, build)
    return body.response(request)


@router.get(
    "/{job_id}/pareto",
    response_model=ParetoPublic,
    responses={304: {"description": "The client's copy (If-None-Match) is current."},
               **error_responses(404, 503)},
)  # fmt: skip
def get_pareto(
    job_id: str, request: Request, factory: SessionFactoryDep, cache: ReadCacheDep
) -> Response:
    """The stored front (empty until the job ends); ETag as for the trials."""
    with session_scope(factory) as session:
        version = _version_or_404(session, job_id)

        def build() -> CachedBody:
            repo = JobRepository(session)
            job = _job_or_404(repo, job_id)
            objectives = [ObjectivePublic(**o) for o in job.spec.get("objectives", [])]
            front = ParetoPublic(objectives=objectives, points=repo.get_pareto(job_id))
            return CachedBody.of(front.model_dump_json().encode())

        body = cache.read(version, ("pareto", job_id), build)
    return body.response(request)


def _trial(repo: JobRepository, job_id: str, number: int) -> TrialRecord:
    found = repo.get_trial(job_id, number)
    if found is None:
        raise HTTPException(404, f"job {job_id} has no trial {number}")
    return found


@router.get(
    "/{job_id}/recommendation",
    response_model=RecommendationPublic,
    responses={200: {"content": {"text/plain": {}}}, **error_responses(404, 503)},
)
def get_recommendation(
    job_id: str,
    request: Request,
    factory: SessionFactoryDep,
    cache: ReadCacheDep,
    format: Annotated[
        str | None,
        Query(
            max_length=32,
            description="A launch format: training megatron|deepspeed|torchtitan|nemo, "
            "inference vllm|sglang|trtllm, and yaml|json for both.",
        ),
    ] = None,
    trial: Annotated[
        int | None, Query(ge=0, le=MAX_INDEX, description="Any trial instead of the pick.")
    ] = None,
) -> Response:
    """The recommended configuration with its launch files (or one of them, ``format``);
    a finished job's answers come from the read cache."""
    with session_scope(factory) as session:
        version = _version_or_404(session, job_id)
        key = ("recommendation", job_id, format, trial)
        body = cache.read(
            version, key, lambda: _recommendation(JobRepository(session), job_id, format, trial)
        )
    return body.response(request)


def _recommendation(
    repo: JobRepository, job_id: str, format: str | None, trial: int | None
) -> CachedBody:
    job = _job_or_404(repo, job_id)
    spec = parse_job_spec(job.spec)
    if trial is not None:
        t = _trial(repo, job_id, trial)
        config, metrics, reason, number = t.config, t.metrics, "chosen by the client", t.number
    else:
        rec = repo.get_recommendation(job_id)
        if rec is None:
            msg = (
                f"job {job_id} is {job.status}; the recommendation appears when it succeeds"
                if job.status != "succeeded"
                else "no evaluated configuration fits in memory and meets the limits"
            )
            raise HTTPException(404, msg)
        config, metrics, reason, number = rec.config, rec.metrics, rec.reason, rec.trial_number
    formats = kind_of(spec).exporters
    if format is not None and format not in formats:
        raise SpecError(
            [("format", f"unknown format '{format}'; use one of: {', '.join(formats)}")], "query"
        )
    if format is not None and format != "json":
        text = export(format, spec, config, metrics)
        return CachedBody.of(text.encode(), "text/plain; charset=utf-8")
    launch = {f: export(f, spec, config, metrics) for f in formats if f not in ("json", "yaml")}
    rec_public = RecommendationPublic(
        trial_number=number, config=config, metrics=metrics, reason=reason, launch=launch
    )
    return CachedBody.of(rec_public.model_dump_json().encode())
