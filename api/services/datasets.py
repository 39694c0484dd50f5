"""Golden datasets: create, list, change and delete them; add cases by hand, by import, from a turn.

A case is the user's messages of a conversation so far (each runs as one turn) with its
own evaluators and tags. An import (JSON Lines or CSV) is checked whole before anything is
written: the first bad row is reported by its line and field, and nothing of it is stored.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import ApiError
from schemas.api.evals import (
    MAX_CASES,
    CaseCreate,
    CasePublic,
    DatasetCreate,
    DatasetImport,
    DatasetPublic,
    DatasetUpdate,
    ImportResult,
)
from schemas.enums import MessageRole
from schemas.evals import EVALUATORS
from schemas.tables import Conversation, Dataset, DatasetCase, Message, Turn, utcnow


def _specs(evaluators: list[Any]) -> list[dict[str, Any]]:
    """Evaluators as stored: JSON, by the field names the API takes (`schema`, not `schema_`)."""
    return list(EVALUATORS.dump_python(evaluators, mode="json", by_alias=True))


async def _count(session: AsyncSession, dataset_id: str) -> int:
    return int(await session.scalar(select(func.count()).where(DatasetCase.dataset_id == dataset_id)) or 0)


async def public(session: AsyncSession, dataset: Dataset) -> DatasetPublic:
    return DatasetPublic(
        id=dataset.id,
        name=dataset.name,
        description=dataset.description,
        evaluators=dataset.evaluators,
        sandbox=dataset.sandbox,
        cases=await _count(session, dataset.id),
        created_at=dataset.created_at,
        updated_at=dataset.updated_at,
    )


def case_public(case: DatasetCase) -> CasePublic:
    return CasePublic(
        id=case.id,
        seq=case.seq,
        name=case.name,
        messages=[str(m) for m in case.messages],
        evaluators=case.evaluators,
        tags=[str(t) for t in case.tags],
        source=case.source,
        created_at=case.created_at,
    )


async def find_dataset(session: AsyncSession, team_id: str, ref: str) -> Dataset:
    """The team's live dataset with this id or name, or 404."""
    found = (
        await session.execute(
            select(Dataset).where(
                Dataset.team_id == team_id,
                Dataset.deleted_at.is_(None),
                (Dataset.id == ref) | (Dataset.name == ref),
            )
        )
    ).scalars()
    rows = list(found)
    if not rows:
        raise ApiError(404, "dataset_not_found", f"no dataset '{ref}' in this team")
    return next((d for d in rows if d.id == ref), rows[0])


def _taken(name: str) -> ApiError:
    return ApiError(409, "dataset_exists", f"a dataset named '{name}' already exists in this team")


async def create_dataset(session: AsyncSession, team_id: str, body: DatasetCreate) -> Dataset:
    dataset = Dataset(
        team_id=team_id,
        name=body.name.strip(),
        description=body.description,
        evaluators=_specs(body.evaluators),
        sandbox=body.sandbox,
    )
    session.add(dataset)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise _taken(body.name) from None
    return dataset


async def list_datasets(session: AsyncSession, team_id: str) -> list[Dataset]:
    rows = await session.execute(
        select(Dataset).where(Dataset.team_id == team_id, Dataset.deleted_at.is_(None)).order_by(Dataset.name)
    )
    return list(rows.scalars())


async def update_dataset(session: AsyncSession, team_id: str, ref: str, body: DatasetUpdate) -> Dataset:
    dataset = await find_dataset(session, team_id, ref)
    given = body.model_fields_set
    for field in ("name", "description", "evaluators", "sandbox"):
        if field in given and getattr(body, field) is None:
            raise ApiError(
                422,
                "validation_error",
                f"{field}: not null; leave it out to keep it",
                [{"field": field, "message": "not null"}],
            )
    if body.name is not None:
        dataset.name = body.name.strip()
    if body.description is not None:
        dataset.description = body.description
    if body.evaluators is not None:
        dataset.evaluators = _specs(body.evaluators)
    if body.sandbox is not None:
        dataset.sandbox = body.sandbox
    dataset.updated_at = utcnow()
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise _taken(body.name or "") from None
    return dataset


async def delete_dataset(session: AsyncSession, team_id: str, ref: str) -> None:
    """Delete it (its runs and results stay readable by id)."""
    dataset = await find_dataset(session, team_id, ref)
    dataset.deleted_at = utcnow()
    await session.commit()


async def list_cases(session: AsyncSession, team_id: str, ref: str) -> list[DatasetCase]:
    dataset = await find_dataset(session, team_id, ref)
    rows = await session.execute(
        select(DatasetCase).where(DatasetCase.dataset_id == dataset.id).order_by(DatasetCase.seq)
    )
    return list(rows.scalars())


async def _next_seq(session: AsyncSession, dataset: Dataset) -> int:
    last = await session.scalar(select(func.max(DatasetCase.seq)).where(DatasetCase.dataset_id == dataset.id))
    return int(last or 0) + 1


async def _room(session: AsyncSession, dataset: Dataset, adding: int) -> None:
    if await _count(session, dataset.id) + adding > MAX_CASES:
        raise ApiError(
            409,
            "dataset_full",
            f"a dataset holds at most {MAX_CASES} cases; '{dataset.name}' would exceed it",
        )


async def _locked(session: AsyncSession, team_id: str, ref: str) -> Dataset:
    """The dataset, its row locked (PostgreSQL) so two writers number cases one after the other."""
    dataset = await find_dataset(session, team_id, ref)
    await session.refresh(dataset, with_for_update=True)
    return dataset


async def _turn_messages(session: AsyncSession, team_id: str, conversation_id: str, turn: int) -> list[str]:
    """The user's messages of a recorded conversation up to and with turn `turn`'s."""
    conversation = await session.get(Conversation, conversation_id)
    if conversation is None or conversation.team_id != team_id:
        raise ApiError(404, "conversation_not_found", f"no conversation '{conversation_id}' in this team")
    exists = await session.scalar(
        select(Turn.id).where(Turn.conversation_id == conversation_id, Turn.n == turn)
    )
    if exists is None:
        raise ApiError(404, "turn_not_found", f"conversation '{conversation_id}' has no turn {turn}")
    rows = await session.execute(
        select(Message.content)
        .where(
            Message.conversation_id == conversation_id,
            Message.role == MessageRole.USER,
            Message.turn <= turn,
        )
        .order_by(Message.seq)
    )
    messages = [content for (content,) in rows if content.strip()]
    if not messages:
        raise ApiError(
            409, "turn_has_no_message", f"turn {turn} of '{conversation_id}' has no user message to replay"
        )
    return messages


async def add_case(session: AsyncSession, team_id: str, ref: str, body: CaseCreate) -> DatasetCase:
    """Add one case: the given messages, or a recorded conversation's up to a turn."""
    dataset = await _locked(session, team_id, ref)
    await _room(session, dataset, 1)
    source = None
    if body.from_turn is not None:
        messages = await _turn_messages(session, team_id, body.from_turn.conversation, body.from_turn.turn)
        source = {"conversation": body.from_turn.conversation, "turn": body.from_turn.turn}
    else:
        assert body.messages is not None
        messages = list(body.messages)
    case = DatasetCase(
        team_id=team_id,
        dataset_id=dataset.id,
        seq=await _next_seq(session, dataset),
        name=body.name,
        messages=messages,
        evaluators=_specs(body.evaluators),
        tags=list(body.tags),
        source=source,
    )
    session.add(case)
    dataset.updated_at = utcnow()
    await session.commit()
    return case


async def delete_case(session: AsyncSession, team_id: str, ref: str, case_id: str) -> None:
    dataset = await find_dataset(session, team_id, ref)
    case = await session.get(DatasetCase, case_id)
    if case is None or case.dataset_id != dataset.id:
        raise ApiError(404, "case_not_found", f"dataset '{dataset.name}' has no case '{case_id}'")
    await session.delete(case)
    await session.commit()


_CASE = TypeAdapter(CaseCreate)
_SHORTCUTS = ("expect_contains", "expect_exact", "expect_regex", "expect_tools", "expect_no_tool")


class RowError(Exception):
    """A row of an import that cannot be a case: where, which field and why."""

    def __init__(self, line: int, field: str, message: str) -> None:
        super().__init__(f"line {line}, field {field}: {message}")
        self.line, self.field, self.message = line, field, message


def _with_shortcuts(row: dict[str, Any], line: int) -> dict[str, Any]:
    """A row's shortcut columns as evaluators, `input` as `messages`."""
    row = dict(row)
    evaluators = list(row.pop("evaluators", None) or [])
    if not isinstance(evaluators, list):
        raise RowError(line, "evaluators", "a list of evaluators")
    if "input" in row:
        if "messages" in row:
            raise RowError(line, "input", "give input or messages, not both")
        row["messages"] = [row.pop("input")]
    for key in _SHORTCUTS:
        value = row.pop(key, None)
        if value in (None, "", [], False):
            continue
        if key == "expect_contains":
            evaluators.append({"kind": "contains", "value": value})
        elif key == "expect_exact":
            evaluators.append({"kind": "exact", "value": value})
        elif key == "expect_regex":
            evaluators.append({"kind": "regex", "pattern": value})
        elif key == "expect_tools":
            tools = (
                value if isinstance(value, list) else [t.strip() for t in str(value).split(";") if t.strip()]
            )
            evaluators.append({"kind": "tools", "called": tools})
        elif value is True or str(value).lower() in ("true", "1", "yes"):
            evaluators.append({"kind": "tools", "none": True})
    row["evaluators"] = evaluators
    return row


def _case_of(row: Any, line: int) -> CaseCreate:
    if not isinstance(row, dict):
        raise RowError(line, "(row)", "each row must be a JSON object")
    if "from_turn" in row:
        raise RowError(line, "from_turn", "an import takes messages; add a recorded turn with POST …/cases")
    try:
        return _CASE.validate_python(_with_shortcuts(row, line))
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(row)"
        raise RowError(line, field, first["msg"]) from None


def _jsonl_rows(content: str) -> list[tuple[int, Any]]:
    rows: list[tuple[int, Any]] = []
    for line, text in enumerate(content.splitlines(), start=1):
        if not text.strip():
            continue
        try:
            rows.append((line, json.loads(text)))
        except json.JSONDecodeError as err:
            raise RowError(line, "(row)", f"not JSON: {err.msg} at column {err.colno}") from None
    return rows


def _csv_rows(content: str) -> list[tuple[int, Any]]:
    reader = csv.DictReader(io.StringIO(content))
    rows: list[tuple[int, Any]] = []
    try:
        for record in reader:
            line = reader.line_num
            if None in record:
                raise RowError(line, "(row)", "more values than the header has columns")
            row: dict[str, Any] = {k: v for k, v in record.items() if k and v not in (None, "")}
            for field in ("messages", "evaluators"):
                if field in row:
                    try:
                        row[field] = json.loads(row[field])
                    except json.JSONDecodeError as err:
                        raise RowError(line, field, f"not a JSON list: {err.msg}") from None
            if "tags" in row:
                row["tags"] = [t.strip() for t in str(row["tags"]).split(";") if t.strip()]
            rows.append((line, row))
    except csv.Error as err:
        raise RowError(reader.line_num, "(row)", f"not CSV: {err}") from None
    return rows


def parse_import(body: DatasetImport) -> list[CaseCreate]:
    """Every row of an import as a case.

    Raises:
        RowError: the first row that cannot be one.
    """
    rows = _jsonl_rows(body.content) if body.format == "jsonl" else _csv_rows(body.content)
    return [_case_of(row, line) for line, row in rows]


async def import_cases(session: AsyncSession, team_id: str, ref: str, body: DatasetImport) -> ImportResult:
    """Add every row as a case in one transaction, or none (422 naming the first bad line and field)."""
    dataset = await _locked(session, team_id, ref)
    try:
        cases = parse_import(body)
    except RowError as err:
        raise ApiError(
            422,
            "import_invalid",
            f"nothing was imported: {err}",
            [{"field": "content", "line": err.line, "column": err.field, "message": err.message}],
        ) from None
    if not cases:
        raise ApiError(
            422,
            "import_invalid",
            "nothing was imported: the content holds no rows",
            [{"field": "content", "message": "no rows"}],
        )
    await _room(session, dataset, len(cases))
    seq = await _next_seq(session, dataset)
    rows = [
        DatasetCase(
            team_id=team_id,
            dataset_id=dataset.id,
            seq=seq + index,
            name=case.name,
            messages=list(case.messages or []),
            evaluators=_specs(case.evaluators),
            tags=list(case.tags),
        )
        for index, case in enumerate(cases)
    ]
    session.add_all(rows)
    dataset.updated_at = utcnow()
    await session.commit()
    return ImportResult(imported=len(rows), cases=[r.id for r in rows])
