"""Which queued jobs a runner may claim: command jobs only when its operator allow-listed the
command.

A command job runs a program on the runner's machine, so admitting it on one server (whose
allow-list it passed) must not let a runner elsewhere run it: runners sharing one database
may belong to operators who allow other templates, or none. The jobs table therefore keeps,
beside the spec, the evaluator's type (``evaluator_type``) and, for command jobs, the SHA-256
of the command line (``command_sha256``), both set when the job is stored; a runner claims
with a ``CommandPolicy`` that filters on them in SQL, so a job it may not run stays queued for
one that may. Rows whose columns are empty (stored by an older server) pass the filter and are
checked against the spec itself before they run (``CommandPolicy.allows``); the runner then
hands them back with the columns filled in (``JobRepository.release_unrunnable``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy import or_

from results._queries import jobs

COMMAND = "command"
DEFAULT_EVALUATOR = "analytical"  # a spec without an evaluator (search_spaces.job_spec)
EVALUATOR_TYPE_CHARS = 32  # the width of jobs.evaluator_type


def command_sha256(command: str) -> str:
    """The hex SHA-256 of a command line as stored in the spec (UTF-8): what the claim
    filter compares, so the command text itself need not be indexed or compared in SQL."""
    return hashlib.sha256(command.encode("utf-8")).hexdigest()


def evaluator_of(spec: Mapping[str, Any]) -> tuple[str, str | None]:
    """(evaluator type, command or None) of a stored job spec, read as the spec parser reads
    it: a bare type name, a mapping with ``type``, or nothing (the analytical default). A
    command job without a usable command gets ``""``: it is claimable by no restricted
    runner, as no template is empty."""
    evaluator = spec.get("evaluator")
    if evaluator is None:
        return DEFAULT_EVALUATOR, None
    if isinstance(evaluator, str):
        kind: Any = evaluator
        evaluator = {}
    elif isinstance(evaluator, Mapping):
        kind = evaluator.get("type", DEFAULT_EVALUATOR)
    else:
        kind = "unknown"
    kind = str(kind)[:EVALUATOR_TYPE_CHARS]
    if kind != COMMAND:
        return kind, None
    command = evaluator.get("command")
    return kind, command if isinstance(command, str) else ""


def evaluator_columns(spec: Mapping[str, Any]) -> dict[str, str | None]:
    """The ``evaluator_type`` and ``command_sha256`` column values of a job with this spec."""
    kind, command = evaluator_of(spec)
    return {
        "evaluator_type": kind,
        "command_sha256": None if command is None else command_sha256(command),
    }


@dataclass(frozen=True)
class CommandPolicy:
    """The command jobs one runner may run: those whose command hashes to one of
    ``allowed_sha256`` (empty: no command job); ``None`` means any command (only for a
    runner on the user's own machine). Every other evaluator is always allowed."""

    allowed_sha256: frozenset[str] | None = frozenset()

    @classmethod
    def of_templates(cls, templates: Mapping[str, str] | Iterable[str]) -> CommandPolicy:
        """The policy of a runner whose operator allow-listed these command templates (a
        name -> template mapping, or the templates themselves); none: no command jobs."""
        texts = templates.values() if isinstance(templates, Mapping) else templates
        return cls(frozenset(command_sha256(t) for t in texts))

    @classmethod
    def unrestricted(cls) -> CommandPolicy:
        return cls(None)

    def allows(self, spec: Mapping[str, Any]) -> bool:
        """May a runner with this policy run a job with this spec? (The check made in
        Python right before a job runs, whatever its columns say.)"""
        kind, command = evaluator_of(spec)
        if kind != COMMAND or self.allowed_sha256 is None:
            return True
        return command is not None and command_sha256(command) in self.allowed_sha256

    def claimable(self) -> ColumnElement[bool] | None:
        """The WHERE condition on ``jobs`` of the jobs this policy may claim (None: all).
        Rows with no ``evaluator_type`` (stored before the column existed and not yet
        backfilled) pass, to be checked against their spec before they run."""
        if self.allowed_sha256 is None:
            return None
        conditions = [jobs.c.evaluator_type.is_(None), jobs.c.evaluator_type != COMMAND]
        if self.allowed_sha256:
            conditions.append(jobs.c.command_sha256.in_(sorted(self.allowed_sha256)))
        return or_(*conditions)

    def describe(self) -> str:
        """For the runner's start-up log line."""
        if self.allowed_sha256 is None:
            return "any command"
        if not self.allowed_sha256:
            return "no command jobs"
        return f"{len(self.allowed_sha256)} allow-listed command template(s)"


NO_COMMANDS = CommandPolicy()
