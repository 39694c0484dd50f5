"""The evals pages: `/evals` (datasets and runs), a dataset's cases, a run's live results, a comparison."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["web"], include_in_schema=False)
