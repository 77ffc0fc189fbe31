"""The server's allow-list of command templates: what the ``command`` evaluator may run there.

A ``paretune serve`` with the command evaluator on runs only templates its operator named
(``--command-template NAME=TEMPLATE`` or a YAML file of ``NAME: TEMPLATE`` given with
``--command-templates``). A job refers to one by name (``evaluator.template``) and the server
fills in ``evaluator.command``; a job that spells out a command is accepted only when the
command is, character for character, one of the templates. Names rather than free text, because
that is what a platform team maintains: users pick a benchmark, operators own what it runs.

The template's argument vector is fixed by the operator: it is ``shlex``-split before any value
is filled in and runs without a shell (``cost_models.command``), so a value can neither add
arguments nor reach a shell. Two ways around that remain, and both are refused for server jobs:
a job's own ``env`` / ``workdir`` (``LD_PRELOAD``, ``PATH``, a relative script in another
directory), and free-text values (a model's name) filled into a template that hands its
argument to a shell or to an option parser, e.g. ``bash -c "train {model_name}"`` or a value
starting with ``-``. Knob values come from closed, validated domains (numbers, booleans,
fixed names); strings a user can choose must look like a plain token.

Admission is not the only check: runners sharing a database may belong to operators with
other lists, so each runner claims only command jobs whose command is one of its own
templates (``results.claim_policy``; `paretune worker --command-template`, and the server
passes its list to the runner process it starts).

The CLI's local ``paretune tune`` does not go through this module: there the user runs their
own command on their own machine.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any

from search_spaces.evaluators import CommandEvaluatorSpec
from search_spaces.evaluators import command_placeholders

TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# A value filled into a server template: a plain token, no whitespace, quotes or shell syntax,
# not an option (a leading '-' only as the sign of a number).
SAFE_VALUE = re.compile(r"^(?:-?[0-9][0-9.eE+-]*|[A-Za-z0-9_.:/@+=,%][A-Za-z0-9_.:/@+=,%-]*)$")
LISTED_NAMES_MAX = 20


class TemplateError(ValueError):
    """A bad allow-list entry (raised when the server starts, naming the entry and the fix)."""


def check_templates(templates: Mapping[str, str]) -> dict[str, str]:
    """Validate an allow-list: names are short plain tokens, templates split into arguments
    and use only plain ``{placeholder}`` names. Templates are stripped of surrounding blanks
    (meaningless to ``shlex``), so a template reads the same however it reached a process:
    from a file, an option, or the server's options handed to its runner process."""
    out = {}
    for name, template in templates.items():
        where = f"command template '{name}'"
        if not isinstance(name, str) or not TEMPLATE_NAME.match(name):
            raise TemplateError(
                f"{where}: a name is 1-64 letters, digits, '_', '.' or '-', starting with a "
                "letter or digit"
            )
        if not isinstance(template, str) or not template.strip():
            raise TemplateError(f"{where}: give the command line as a non-empty string")
        try:
            shlex.split(template)
            command_placeholders(template)
        except ValueError as exc:
            raise TemplateError(f"{where}: {exc}") from None
        out[name] = template.strip()
    return out


def parse_template_option(option: str) -> tuple[str, str]:
    """``NAME=TEMPLATE`` (the ``--command-template`` option) -> (name, template)."""
    name, sep, template = option.partition("=")
    if not sep or not name.strip() or not template.strip():
        raise TemplateError(
            f"--command-template {option!r}: write NAME=TEMPLATE, e.g. "
            "bench='python /opt/bench.py --tp {tp}'"
        )
    return name.strip(), template.strip()


def load_templates_file(path: str | Path) -> dict[str, str]:
    """A YAML (or JSON) file holding one mapping of template name -> command template."""
    import yaml

    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text())
    except OSError as exc:
        raise TemplateError(f"cannot read the command templates file {file}: {exc}") from None
    except yaml.YAMLError as exc:
        raise TemplateError(f"{file} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not data:
        raise TemplateError(
            f"{file} must hold a non-empty mapping of NAME: TEMPLATE, e.g. "
            "`bench: python /opt/bench.py --tp {tp}`"
        )
    return check_templates({str(k): v for k, v in data.items()})


def _names(templates: Mapping[str, str]) -> str:
    names = sorted(templates)
    shown = ", ".join(names[:LISTED_NAMES_MAX])
    return shown + (
        f" and {len(names) - LISTED_NAMES_MAX} more" if len(names) > LISTED_NAMES_MAX else ""
    )


def resolve_command(
    settings: CommandEvaluatorSpec, templates: Mapping[str, str]
) -> tuple[CommandEvaluatorSpec, list[tuple[str, str]]]:
    """The evaluator settings with the allow-listed command filled in, or (field, message)
    errors saying why the server refuses them and what to do instead."""
    if not templates:
        return settings, [
            (
                "evaluator.type",
                "this server allow-lists no command template, so it runs no command jobs; its "
                "operator can name some with `paretune serve --command-template NAME=TEMPLATE`, "
                "or run the job locally with `paretune tune`",
            )
        ]
    errors: list[tuple[str, str]] = []
    name = settings.template
    if name is not None:
        if name not in templates:
            errors.append(
                (
                    "evaluator.template",
                    f"'{name}' is not among this server's command templates; use one of: "
                    f"{_names(templates)}",
                )
            )
        elif settings.command and settings.command != templates[name]:
            errors.append(
                (
                    "evaluator.command",
                    f"differs from the server's template '{name}'; leave command out (the "
                    "server fills it in from the template)",
                )
            )
    else:
        matches = [n for n, t in sorted(templates.items()) if t == settings.command]
        if matches:
            name = matches[0]
        else:
            errors.append(
                (
                    "evaluator.command",
                    "this server runs only allow-listed command templates; name one with "
                    f"evaluator.template (one of: {_names(templates)}) instead of a command",
                )
            )
    if settings.env:
        errors.append(
            (
                "evaluator.env",
                "a server runs its templates in its own environment; remove env, or ask the "
                "operator to set the variables for the server",
            )
        )
    if settings.workdir is not None:
        errors.append(
            (
                "evaluator.workdir",
                "a server runs its templates from its own directory; remove workdir (templates "
                "use absolute paths)",
            )
        )
    if errors or name is None:
        return settings, errors
    return settings.model_copy(update={"template": name, "command": templates[name]}), []


def _text(value: Any) -> str:
    """A value as ``cost_models.command.render_command`` writes it into an argument."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def unsafe_values(spec: Any, knobs: Mapping[str, list[Any]]) -> list[tuple[str, str]]:
    """(field, message) for each value the command would receive that is not a plain token:
    the spec's own values (the model's name) and every searched value of each knob."""
    from tuner.command_evaluator import command_values
    from tuner.kinds import kind_of

    values = command_values(spec, kind_of(spec).default_config(spec))
    errors = []
    for name in dict.fromkeys(command_placeholders(spec.evaluator.command)):
        if name == "python":
            continue  # the worker's own interpreter
        candidates = knobs.get(name) or [values.get(name)]
        bad = [v for v in candidates if v is not None and not SAFE_VALUE.match(_text(v))]
        if bad:
            where = "model.name" if name == "model_name" else f"space.{name}"
            if name not in knobs and name != "model_name":
                where = f"workload.{name}"
            errors.append(
                (
                    where,
                    f"{_text(bad[0])!r} would be passed to the command as {{{name}}}; on a "
                    "server such values must be plain tokens (letters, digits and _ . : / @ + "
                    "= , % -, not starting with '-')",
                )
            )
    return errors


def templates_from_options(options: list[str], file: str | Path | None) -> dict[str, str]:
    """The allow-list from ``paretune serve``: a templates file, then ``NAME=TEMPLATE``
    options (an option overrides the file's template of the same name)."""
    templates = load_templates_file(file) if file else {}
    for option in options:
        name, template = parse_template_option(option)
        templates[name] = template
    return check_templates(templates)
