"""The `paretune` command: estimate, tune, serve, worker, submit."""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Iterable
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated
from typing import Any
from typing import Literal

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn
from rich.progress import MofNCompleteColumn
from rich.progress import Progress
from rich.progress import TextColumn
from rich.progress import TimeElapsedColumn
from rich.table import Table

from search_spaces.job_spec import format_validation_error
from search_spaces.job_spec import parse_job_spec
from tuner.kinds import AnyJobSpec
from tuner.specfile import SpecFileError
from tuner.specfile import load_spec_documents

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()
err_console = Console(stderr=True)

SpecPath = Annotated[Path, typer.Argument(help="Job spec file (YAML or JSON).")]


def fail(message: str, code: int = 2) -> None:
    """One readable message on stderr and the exit code; never a traceback for bad input."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _load(path: Path) -> list[Any]:
    try:
        return load_spec_documents(path)
    except SpecFileError as exc:
        fail(str(exc))
        raise  # unreachable; keeps type checkers honest


@app.command()
def estimate(
    file: SpecPath,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help="Also show where the time and memory go, term by term (with --json: as "
            "data under `explain`).",
        ),
    ] = False,
) -> None:
    """Estimate each spec's fixed `config` (a list of specs is answered in one call)."""
    from tuner.estimate import estimate_many

    results = estimate_many(_load(file), explain=explain)
    if as_json:
        print(json.dumps(results, indent=2))
    else:
        for res in results:
            _print_estimate(res)
            for section in res.get("explain", []):
                console.print(_explain_table(section))
    if any("error" in r for r in results):
        raise typer.Exit(2)


def _explain_table(section: dict[str, Any]) -> Table:
    """One section of `--explain`: each term, its share of the total, and what it is."""
    unit, total = section["unit"], section["total"]
    facts = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in section["facts"].items()
    )
    title = section["title"] + (f"  ({facts})" if facts else "")
    table = Table(title=title, title_justify="left")
    table.add_column("term")
    table.add_column(unit, justify="right")
    table.add_column("share", justify="right")
    table.add_column("what")
    base = total if section["additive"] and total else None
    for row in section["rows"]:
        share = f"{100 * row['value'] / base:.1f}%" if base else ""
        style = "dim" if row["value"] == 0 else None
        table.add_row(row["term"], f"{row['value']:.4g}", share, row["note"], style=style)
    if section["additive"] and total is not None:
        table.add_row("total", f"{total:.4g}", "100.0%", "", style="bold")
    return table


def _print_estimate(res: dict[str, Any]) -> None:
    if "error" in res:
        err_console.print(f"[bold red]error:[/] {res['error']}", highlight=False)
        return
    table = Table(title=f"{res['name']}  {res['config']}", show_header=False)
    kind = res.get("kind", "training")
    for key in _ESTIMATE_FIELDS.get(kind, _ESTIMATE_FIELDS["training"]):
        val = res.get(key)
        table.add_row(key, f"{val:.4g}" if isinstance(val, float) else str(val))
    unit = "_ms" if kind == "inference" else "_s"  # the inference breakdown is in milliseconds
    for term, value in res.get("breakdown", {}).items():
        table.add_row(f"  {term}{unit}", f"{value:.4g}")
    console.print(table)


_ESTIMATE_FIELDS: dict[str, tuple[str, ...]] = {
    "training": (
        "tokens_per_s_per_gpu",
        "tokens_per_s",
        "step_time_s",
        "mfu",
        "memory_per_gpu_gib",
        "fits",
        "cost_per_million_tokens_usd",
    ),
    "inference": (
        "output_tokens_per_s_per_gpu",
        "output_tokens_per_s",
        "tokens_per_s_per_user",
        "ttft_ms",
        "tpot_ms",
        "batch_size",
        "memory_per_gpu_gib",
        "fits",
        "cost_per_million_tokens_usd",
        "quality_loss_pct",
    ),
}


def _parse_spec(doc: Any) -> AnyJobSpec:
    """A validated spec whose kind and evaluator this version can run, or exit 2."""
    from tuner.kinds import evaluator_for

    try:
        spec = parse_job_spec(doc)
        evaluator_for(spec)
    except ValidationError as exc:
        fail(format_validation_error(exc))
        raise
    except ValueError as exc:
        fail(str(exc))
        raise
    return spec


@app.command()
def tune(
    file: SpecPath,
    out: Annotated[
        Path | None, typer.Option(help="Write JSON results and launch files here.")
    ] = None,
    db: Annotated[str | None, typer.Option(help="Database URL (default: embedded SQLite).")] = None,
    executor: Annotated[str, typer.Option(help="ray (default) or local.")] = "ray",
    trials: Annotated[int | None, typer.Option(help="Override budget.trials.")] = None,
) -> None:
    """Run one tuning job in-process and print its Pareto front and recommendation."""
    from tuner.local_job import run_local_job

    docs = _load(file)
    if len(docs) != 1:
        fail(f"{file} holds {len(docs)} specs; `tune` takes one")
    doc = docs[0]
    if trials is not None and isinstance(doc, dict):
        doc = {**doc, "budget": {**(doc.get("budget") or {}), "trials": trials}}
    spec = _parse_spec(doc)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    ) as bar:
        task = bar.add_task("starting", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description="trials")

        try:
            job_id, result = run_local_job(
                doc, spec, db_url=db, executor_kind=executor, progress=progress
            )
        except ValueError as exc:
            fail(str(exc))
            raise
    from tuner.report import print_front
    from tuner.report import write_outputs

    print_front(console, spec, job_id, result)
    if out is not None:
        written = write_outputs(out, spec, result)
        console.print(f"wrote {', '.join(str(p) for p in written)}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    db: Annotated[str | None, typer.Option(help="Database URL (or PARETUNE_DATABASE_URL).")] = None,
    max_concurrent_jobs: Annotated[int, typer.Option(help="Jobs run at once.")] = 1,
    executor: Annotated[str, typer.Option(help="ray (default) or local.")] = "ray",
    cors_origin: Annotated[
        list[str] | None, typer.Option(help="Allow this browser origin (CORS is off by default).")
    ] = None,
    require_tokens: Annotated[
        bool | None,
        typer.Option(help="Need API tokens for writes (default: when not on loopback)."),
    ] = None,
    command_template: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=TEMPLATE: allow command-evaluator jobs to run this template (by name, "
            "evaluator.template); repeatable. Without any, command jobs are refused."
        ),
    ] = None,
    command_templates: Annotated[
        str | None,
        typer.Option(
            envvar="PARETUNE_COMMAND_TEMPLATES",
            help="A YAML file of NAME: TEMPLATE, allow-listed like --command-template.",
        ),
    ] = None,
    runner: Annotated[
        str,
        typer.Option(
            help="Where jobs run: process (default; a runner process this server starts, "
            "restarts and stops), embedded (threads of the API process), none (only in "
            "`paretune worker` processes sharing the database)."
        ),
    ] = "process",
    http: Annotated[
        str,
        typer.Option(
            help="HTTP stack: auto (httptools parser and uvloop event loop, from "
            "uvicorn[standard]) or h11 (pure-Python parser on asyncio, the baseline of "
            "benchmarks/load.py)."
        ),
    ] = "auto",
) -> None:
    """Start the REST API and dashboard, and a job runner process beside it (embedded SQLite
    and local Ray by default)."""
    import uvicorn

    from api.main import create_app
    from api.settings import Settings
    from tuner.command_allowlist import templates_from_options

    if http not in HTTP_STACKS:
        fail(f"--http must be one of {', '.join(HTTP_STACKS)} (got {http!r})")
    try:
        templates = templates_from_options(command_template or [], command_templates)
    except ValueError as exc:
        fail(str(exc))
        raise
    try:
        allowed: dict[str, Any] = {}
        if templates:  # naming templates is the operator's opt-in
            allowed = {"allow_command_evaluator": True, "command_templates": templates}
        settings = Settings(
            **allowed,
            database_url=db,
            host=host,
            max_concurrent_jobs=max_concurrent_jobs,
            executor=executor,
            cors_origins=cors_origin or [],
            require_tokens=require_tokens,
            runner=runner,
        )
    except ValidationError as exc:
        fail(format_validation_error(exc))
        raise
    # The service's own messages (jobs claimed, requeued, database retries) beside uvicorn's.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    api = create_app(settings)
    # Everything loaded so far lives as long as the server: frozen out of the collector's
    # sight, so full collections no longer walk it (each one paused every reader for ~90 ms
    # under the load benchmark; none happened in 15 s of it once frozen).
    gc.collect()
    gc.freeze()
    parser, loop = HTTP_STACKS[http]
    uvicorn.run(api, host=host, port=port, log_level="info", http=parser, loop=loop)


# `serve --http`: uvicorn's protocol and event-loop implementations per choice.
HTTP_STACKS: dict[str, tuple[Literal["auto", "h11"], Literal["auto", "asyncio"]]] = {
    "auto": ("auto", "auto"),
    "h11": ("h11", "asyncio"),
}


@app.command()
def worker(
    db: Annotated[str | None, typer.Option(help="Database URL (or PARETUNE_DATABASE_URL).")] = None,
    executor: Annotated[str, typer.Option(help="ray (default) or local.")] = "ray",
    ray_address: Annotated[
        str | None, typer.Option(help="Join this Ray cluster (or RAY_ADDRESS; default: local).")
    ] = None,
    max_concurrent_jobs: Annotated[int, typer.Option(help="Jobs run at once.")] = 1,
    poll_interval_s: Annotated[float, typer.Option(help="Seconds between queue polls.")] = 1.0,
    heartbeat_s: Annotated[
        float | None, typer.Option(help="Seconds between heartbeats (or PARETUNE_HEARTBEAT_S).")
    ] = None,
    stale_job_after_s: Annotated[
        float | None,
        typer.Option(help="Requeue jobs silent this long (or PARETUNE_STALE_JOB_AFTER_S)."),
    ] = None,
    nice: Annotated[int, typer.Option(help="Lower this process's CPU priority by this.")] = 10,
    supervised: Annotated[
        bool, typer.Option(hidden=True, help="Stop when standard input ends (serve's child).")
    ] = False,
    command_template: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=TEMPLATE: run command-evaluator jobs whose command is this template; "
            "repeatable. Without any, this runner leaves command jobs to other runners."
        ),
    ] = None,
    command_templates: Annotated[
        str | None,
        typer.Option(help="A YAML file of NAME: TEMPLATE, allow-listed like --command-template."),
    ] = None,
) -> None:
    """Run queued jobs, without the API: start any number, on any machine, against the
    server's database (PostgreSQL when more than one); SIGTERM stops one, its running jobs
    going back to the queue. Command jobs run only when their command is one of this runner's
    own templates, whichever server admitted them."""
    from tuner.command_allowlist import templates_from_options
    from tuner.worker import WorkerOptions
    from tuner.worker import run_worker

    try:
        templates = templates_from_options(command_template or [], command_templates)
    except ValueError as exc:
        fail(str(exc))
        raise
    try:
        options = WorkerOptions.create(
            command_templates=templates,
            database_url=db,
            executor=executor,
            ray_address=ray_address,
            max_concurrent_jobs=max_concurrent_jobs,
            poll_interval_s=poll_interval_s,
            heartbeat_s=heartbeat_s,
            stale_job_after_s=stale_job_after_s,
            niceness=nice,
            supervised=supervised,
        )
    except ValidationError as exc:
        fail(format_validation_error(exc))
        raise
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    raise typer.Exit(run_worker(options))


@app.command()
def submit(
    file: SpecPath,
    url: Annotated[str, typer.Option(help="Server base URL.")] = "http://127.0.0.1:8000",
    follow: Annotated[bool, typer.Option(help="Show progress until the job ends.")] = False,
    token: Annotated[str | None, typer.Option(envvar="PARETUNE_TOKEN", help="API token.")] = None,
) -> None:
    """Submit a job to a running server; with --follow, show its progress and result."""
    import httpx

    docs = _load(file)
    if len(docs) != 1:
        fail(f"{file} holds {len(docs)} specs; `submit` takes one")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        resp = httpx.post(f"{url}/v1/jobs", json=docs[0], headers=headers, timeout=60)
    except httpx.HTTPError as exc:
        fail(f"cannot reach the server at {url}: {exc}; start it with `paretune serve`")
        raise
    if resp.status_code >= 400:
        fail(_http_error(resp))
    job = resp.json()
    console.print(f"job {job['id']} {job['status']}")
    if follow:
        _follow(url, job["id"])


def _http_error(resp: Any) -> str:
    try:
        body = resp.json()
    except ValueError:
        return f"HTTP {resp.status_code}: {resp.text[:500]}"
    detail = body.get("detail", body)
    if isinstance(detail, list):
        return "\n".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail)
    return f"HTTP {resp.status_code}: {detail}"


def iter_sse(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(event, data) pairs from the lines of a text/event-stream response."""
    event, data = "message", list[str]()
    for line in lines:
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = "message", list[str]()
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def _follow(url: str, job_id: str) -> None:
    """A live progress bar fed by the job's server-sent events."""
    import httpx

    job: dict[str, Any] = {"status": "queued"}
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
    ) as bar:
        task = bar.add_task("queued", total=None)
        timeout = httpx.Timeout(30, read=None)
        with httpx.stream("GET", f"{url}/v1/jobs/{job_id}/events", timeout=timeout) as resp:
            for event, data in iter_sse(resp.iter_lines()):
                if event == "progress":
                    job = json.loads(data)
                    bar.update(
                        task,
                        completed=job.get("trials_done", 0),
                        total=job.get("trials_planned") or None,
                        description=job["status"],
                    )
                elif event in ("end", "error"):
                    break
    if job["status"] != "succeeded":
        fail(f"job {job_id} {job['status']}: {job.get('error') or ''}", code=1)
    rec = httpx.get(f"{url}/v1/jobs/{job_id}/recommendation", timeout=30)
    if rec.status_code == 200:
        body = rec.json()
        console.print(f"[bold]recommended[/] (trial {body['trial_number']}): {body['config']}")
        console.print(f"  why: {body['reason']}")


@app.command("export-study")
def export_study_cmd(
    job_id: Annotated[str, typer.Argument(help="The job's id.")],
    storage: Annotated[str, typer.Option(help="Optuna storage URL, e.g. sqlite:///study.db.")],
    db: Annotated[str | None, typer.Option(help="paretune database URL.")] = None,
    name: Annotated[str | None, typer.Option(help="Study name (default: paretune-JOB).")] = None,
) -> None:
    """Write a job's trials as an Optuna study (optuna-dashboard, Optuna's plots)."""
    import optuna

    from results.repository import JobRepository
    from tuner.export_study import export_study

    with _token_session(db) as session:
        repo = JobRepository(session)
        job = repo.get_job(job_id)
        if job is None:
            fail(f"no job with id '{job_id}' in the database; `GET /v1/jobs` lists them")
            raise AssertionError
        trials = repo.all_trials(job_id)
    study_name = name or f"paretune-{job_id}"
    try:
        count = export_study(job, trials, storage, study_name)
    except optuna.exceptions.DuplicatedStudyError:
        fail(f"study '{study_name}' already exists in {storage}; pass --name")
    console.print(f"wrote {count} trials to study '{study_name}' in {storage}")


token_app = typer.Typer(help="API tokens for write routes (stored hashed).", no_args_is_help=True)
app.add_typer(token_app, name="token")
DbOption = Annotated[str | None, typer.Option(help="Database URL (default: embedded SQLite).")]


def _token_session(db: str | None) -> Any:
    from results.db import database_url
    from results.db import make_engine
    from results.db import make_session_factory
    from results.db import session_scope
    from results.db import upgrade_to_head

    engine = make_engine(database_url(db))
    upgrade_to_head(engine)
    return session_scope(make_session_factory(engine))


@token_app.command("create")
def token_create(name: str, db: DbOption = None) -> None:
    """Create a token; it is printed once and only its hash is kept."""
    from results.tokens import TokenRepository

    with _token_session(db) as session:
        token, record = TokenRepository(session).create(name)
    console.print(f"token {record.id} ({name}); keep it now, it is not shown again:")
    print(token)


@token_app.command("list")
def token_list(db: DbOption = None) -> None:
    """Tokens by id, name, creation, last use and whether revoked (never the tokens)."""
    from results.tokens import TokenRepository

    with _token_session(db) as session:
        records = TokenRepository(session).list()
    table = Table("id", "name", "created", "last used", "revoked")
    for r in records:
        table.add_row(str(r.id), r.name, str(r.created_at), str(r.last_used_at), str(r.revoked))
    console.print(table)


@token_app.command("revoke")
def token_revoke(token_id: int, db: DbOption = None) -> None:
    """Revoke a token by id."""
    from results.tokens import TokenRepository

    with _token_session(db) as session:
        if not TokenRepository(session).revoke(token_id):
            fail(f"no token with id {token_id}; `paretune token list` shows them")
    console.print(f"revoked token {token_id}")


@app.command()
def calibrate(
    db: DbOption = None,
    name: Annotated[str, typer.Option(help="Jobs name it as hardware_profile.")] = "local",
    quick: Annotated[bool, typer.Option(help="Fewer shapes and sizes (under a minute).")] = False,
    world_size: Annotated[int, typer.Option(help="Processes in the collectives.")] = 2,
    threads: Annotated[int, typer.Option(help="CPU threads per process.")] = 1,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    gpu: Annotated[str | None, typer.Option(help="This GPU's catalog id (for the fit).")] = None,
    steps: Annotated[bool, typer.Option(help="Time small training steps to fit on.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Benchmark this machine (GEMMs, attention, copies, collectives, small training steps),
    store the hardware profile and show the calibration fitted to it."""
    from search_spaces.catalog import load_gpu
    from tuner.hardware_profiles import calibrate as run_calibration
    from tuner.hardware_profiles import summary_rows

    try:
        base = load_gpu(gpu) if gpu else None
        err_console.print(f"benchmarking ({'quick' if quick else 'full'} suite) ...")
        record, fit = run_calibration(
            name,
            db_url=db,
            quick=quick,
            world_size=world_size,
            threads=threads,
            device=device,
            base_gpu=base,
            with_steps=steps,
        )
    except (RuntimeError, ValueError) as exc:
        fail(str(exc))
        raise
    rows = summary_rows(record, fit)
    if as_json:
        print(json.dumps({"id": record.id, "name": record.name, **dict(rows)}, indent=2))
        return
    table = Table(title=f"hardware profile {record.id} '{record.name}'", show_header=False)
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


def main() -> None:  # pragma: no cover
    app(prog_name="paretune")


if __name__ == "__main__":  # pragma: no cover
    main()
