"""An OpenAPI document read, validated and turned into tools, one per offered operation.

The document is validated by `openapi-spec-validator` (3.0 and 3.1); a bad one is refused
with the validator's own message and the place it points at. A tool's arguments are its
operation's path, query and header parameters and, as `body`, its JSON request body, each
schema with its `$ref`s resolved (`referencing`, which the validator also uses), so the
model sees one self-contained JSON schema.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from schemas.api import ActionTool
from schemas.api.actions import ActionParameter

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
SAFE_METHODS = frozenset({"GET", "HEAD"})
"""Methods that change nothing; every other one is side-effecting."""
MAX_DEPTH = 24
"""How deep a schema is inlined; a recursive one stops there (as `{}`: anything)."""
MAX_DESCRIPTION = 1024
_BASE = "urn:steward:action-spec"
_NOT_IN_NAME = re.compile(r"[^a-zA-Z0-9_-]")


@dataclass
class SpecInvalid(Exception):
    """The document is not valid OpenAPI (or not readable): the validator's words, and where."""

    message: str
    location: str = "$"
    detail: str | None = None
    """The validator's full text, when it says more than its first paragraph."""

    def __str__(self) -> str:
        return f"{self.message} (at {self.location})"


def parse(text: str) -> dict[str, Any]:
    """A document given as JSON or YAML text (YAML is a superset of JSON: one reader for both)."""
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "$"
        problem = getattr(err, "problem", None) or str(err)
        raise SpecInvalid(f"not JSON or YAML: {problem}", where) from None
    if not isinstance(loaded, dict):
        raise SpecInvalid("the document must be a JSON or YAML object (an OpenAPI document)")
    # Dates and other YAML-only values do not survive JSON storage: keep what JSON can hold.
    return dict(json.loads(json.dumps(loaded, default=str)))


def validated(document: Mapping[str, Any]) -> dict[str, Any]:
    """The document, if `openapi-spec-validator` finds it valid OpenAPI 3.0/3.1."""
    version = str(document.get("openapi", ""))
    if not re.match(r"^3\.[01]\.\d+$", version):
        raise SpecInvalid(
            f"unsupported OpenAPI version {version or '(none)'!r}: give an OpenAPI 3.0 or 3.1 document",
            "$.openapi",
        )
    try:
        validate(dict(document))
    except OpenAPIValidationError as err:
        words = err.message
        first = words.split("\n\n", 1)[0]
        raise SpecInvalid(first, err.json_path, words if words != first else None) from None
    except Unresolvable as err:
        raise SpecInvalid(f"unresolvable $ref: {err.ref}", "$") from None
    return dict(document)


class _Inliner:
    """Inlines `$ref`s of a document's schemas, relative to the document itself."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        resource = Resource.from_contents(dict(document), default_specification=DRAFT202012)
        self._resolver = Registry().with_resource(_BASE, resource).resolver(_BASE)
        self._three_oh = str(document.get("openapi", "")).startswith("3.0")

    def lookup(self, node: Any, where: str) -> Any:
        """A node that may be a `$ref` (a parameter, a request body), resolved."""
        seen = 0
        while isinstance(node, Mapping) and isinstance(node.get("$ref"), str):
            seen += 1
            if seen > MAX_DEPTH:
                raise SpecInvalid("a $ref points at itself", where)
            try:
                node = self._resolver.lookup(node["$ref"]).contents
            except Unresolvable as err:
                raise SpecInvalid(f"unresolvable $ref: {err.ref}", where) from None
        return node

    def schema(self, node: Any, where: str, depth: int = 0) -> Any:
        """A schema with every `$ref` inlined (a too-deep or recursive one becomes `{}`)."""
        if depth > MAX_DEPTH:
            return {}
        if isinstance(node, list):
            return [self.schema(item, where, depth + 1) for item in node]
        if not isinstance(node, Mapping):
            return node
        if isinstance(node.get("$ref"), str):
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            target = self.lookup({"$ref": node["$ref"]}, where)
            merged = {**target, **siblings} if isinstance(target, Mapping) else target
            return self.schema(merged, where, depth + 1)
        out = {key: self.schema(value, where, depth + 1) for key, value in node.items()}
        if self._three_oh and out.pop("nullable", False) is True and isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]  # 3.0's `nullable` as JSON Schema says it
        return out


def operations_of(document: Mapping[str, Any]) -> dict[str, tuple[str, str, Mapping[str, Any]]]:
    """Every operation with an `operationId`: (method, path, the operation with its path's parameters)."""
    found: dict[str, tuple[str, str, Mapping[str, Any]]] = {}
    for path, item in (document.get("paths") or {}).items():
        if not isinstance(item, Mapping):
            continue
        shared = item.get("parameters") or []
        for method in METHODS:
            operation = item.get(method)
            if isinstance(operation, Mapping) and isinstance(operation.get("operationId"), str):
                found[operation["operationId"]] = (method.upper(), path, {**operation, "_shared": shared})
    return found


def tool_name(action: str, operation_id: str) -> str:
    """`<action>__<operationId>`, with characters OpenAI does not take as `_`."""
    return f"{action}__{_NOT_IN_NAME.sub('_', operation_id)}"


def _described(method: str, path: str, operation: Mapping[str, Any]) -> str:
    words = " ".join(
        str(operation[k]).strip() for k in ("summary", "description") if isinstance(operation.get(k), str)
    )
    text = words or f"{method} {path}"
    return text[:MAX_DESCRIPTION]


def tools_of(document: Mapping[str, Any], action: str, chosen: list[str]) -> list[ActionTool]:
    """The tools of the chosen operations (an unknown id, or a name clash, is refused on `operations`)."""
    known = operations_of(document)
    inliner = _Inliner(document)
    tools: list[ActionTool] = []
    names: dict[str, str] = {}
    for operation_id in dict.fromkeys(chosen):
        if operation_id not in known:
            listed = ", ".join(sorted(known)) or "none"
            raise SpecInvalid(f"no operation {operation_id!r} in the document; its operationIds: {listed}")
        method, path, operation = known[operation_id]
        name = tool_name(action, operation_id)
        if len(name) > 64:
            raise SpecInvalid(f"tool name {name!r} is longer than 64 characters: use a shorter action name")
        if name in names:
            raise SpecInvalid(f"operations {names[name]!r} and {operation_id!r} both make the tool {name!r}")
        names[name] = operation_id
        tools.append(_tool(inliner, name, operation_id, method, path, operation))
    return tools


def _tool(
    inliner: _Inliner, name: str, operation_id: str, method: str, path: str, operation: Mapping[str, Any]
) -> ActionTool:
    where = f"$.paths[{path!r}].{method.lower()}"
    merged: dict[tuple[str, str], Mapping[str, Any]] = {}
    for raw in [*operation["_shared"], *(operation.get("parameters") or [])]:
        parameter = inliner.lookup(raw, where)  # an operation's own parameter overrides its path's
        if isinstance(parameter, Mapping) and parameter.get("in") in ("path", "query", "header"):
            merged[(str(parameter["in"]), str(parameter["name"]))] = parameter
    properties: dict[str, Any] = {}
    required: list[str] = []
    placed: list[ActionParameter] = []
    for (location, original), parameter in merged.items():
        # `body` is the request body's argument: a parameter of that name, or of a name two
        # locations share, is called `<location>_<name>`.
        clash = sum(1 for _, n in merged if n == original) > 1 or original == "body"
        argument = f"{location}_{original}" if clash else original
        schema = inliner.schema(parameter.get("schema") or {"type": "string"}, where)
        if isinstance(parameter.get("description"), str) and isinstance(schema, dict):
            schema = {"description": parameter["description"][:MAX_DESCRIPTION], **schema}
        properties[argument] = schema
        if parameter.get("required") or location == "path":
            required.append(argument)
        placed.append(ActionParameter(argument=argument, name=original, location=location))
    body = False
    request_body = inliner.lookup(operation.get("requestBody"), where)
    if isinstance(request_body, Mapping):
        content = request_body.get("content") or {}
        media = next((m for m in content if m == "application/json" or m.endswith("+json")), None)
        if media is not None:
            body = True
            properties["body"] = inliner.schema(content[media].get("schema") or {}, where)
            if request_body.get("required"):
                required.append("body")
    arguments: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        arguments["required"] = required
    return ActionTool(
        name=name,
        operation_id=operation_id,
        method=method,
        path=path,
        description=_described(method, path, operation),
        side_effecting=method not in SAFE_METHODS,
        parameters=placed,
        body=body,
        schema=arguments,
    )


def default_server(document: Mapping[str, Any]) -> str | None:
    """The document's first absolute server URL (`servers[0].url` with its variables' defaults)."""
    for server in document.get("servers") or []:
        if not isinstance(server, Mapping) or not isinstance(server.get("url"), str):
            continue
        url = server["url"]
        for key, variable in (server.get("variables") or {}).items():
            if isinstance(variable, Mapping) and "default" in variable:
                url = url.replace("{" + key + "}", str(variable["default"]))
        if re.match(r"^https?://", url):
            return str(url).rstrip("/")
    return None
