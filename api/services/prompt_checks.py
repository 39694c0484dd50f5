"""The checks a prompt passes when it is saved: an agent's whole prompt, or one template in its scope.

Both run the sandbox's static checks (`schemas/prompts.py` `check`) and a trial render with
sample values; a failure is a 422 `template_invalid` naming the template and the line.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from api.errors import ApiError
from schemas.prompts import BUILTINS, PromptProblem, check, reachable, render, root_of, sample_context
from schemas.tables import utcnow


def invalid(problem: PromptProblem, field: str) -> ApiError:
    """The 422 for a template that does not pass: which template, which line, what is wrong."""
    return ApiError(
        422,
        "template_invalid",
        str(problem),
        [{"field": field, "message": problem.message, "template": problem.template, "line": problem.line}],
    )


def check_prompt(
    system_prompt: str,
    timezone: str,
    variables: Mapping[str, str],
    sources: Mapping[str, str],
    default: str | None,
    field: str = "system_prompt",
) -> None:
    """An agent's prompt, with everything it reaches, as the agent will render it (422 otherwise).

    Every reached template must use only the built-ins and this agent's variables.
    """
    allowed = BUILTINS | set(variables)
    try:
        root_name, root = root_of(system_prompt, sources, default)
        check(root_name, root, allowed, sources)
        for name, body in reachable(root, sources, root_name).items():
            check(name, body, allowed, sources)
        render(root_name, root, sources, sample_context(timezone, variables, utcnow()), strict=False)
    except PromptProblem as problem:
        raise invalid(problem, field) from problem


def check_template(
    name: str, body: str, sources: Mapping[str, str], allowed: Collection[str], variables: Mapping[str, str]
) -> None:
    """A template on its own, in its scope (which holds it as it would be saved)."""
    try:
        check(name, body, allowed, sources)
        reachable(body, sources, name)
        render(name, body, sources, sample_context("UTC", variables, utcnow()), strict=False)
    except PromptProblem as problem:
        raise invalid(problem, "body") from problem
