"""SQLAlchemy tables, one module per capability. Every row carries its team; ids are opaque strings.

Import tables from here (`from schemas.tables import Agent`); the modules say where each lives.
"""

from schemas.tables.actions import Action
from schemas.tables.agents import DEFINITION_FIELDS, FROZEN_DEFAULTS, PROMPT_FIELDS, AgentVersion
from schemas.tables.approvals import Approval, ApprovalAudit
from schemas.tables.base import Base, UTCDateTime, new_id, utcnow
from schemas.tables.budgets import LlmUsage, ModelPrice, TeamBudget
from schemas.tables.channels import (
    Channel,
    ChannelApprovalMessage,
    ChannelChat,
    ChannelDelivery,
    ChannelInbound,
)
from schemas.tables.conversations import (
    Agent,
    ApiKey,
    Conversation,
    Event,
    Message,
    Team,
    ToolExecution,
    Turn,
)
from schemas.tables.demo import Booking, Slot, Ticket
from schemas.tables.evals import Dataset, DatasetCase, EvalGate, EvalResult, EvalRun
from schemas.tables.guardrails import GuardrailDefaults, GuardrailViolation
from schemas.tables.incidents import Fault, Incident, IncidentEntry, IncidentNotice, SloObjective
from schemas.tables.mcp import McpServer
from schemas.tables.members import Membership, MemberToken, SignInFailure, TeamAudit, User, WebSession
from schemas.tables.prompts import PromptTemplate
from schemas.tables.providers import LlmProvider
from schemas.tables.replays import Replay, ReplayConversation, ReplayTurn
from schemas.tables.schedules import Report, Schedule, ScheduleRun
from schemas.tables.spans import Span

__all__ = [
    "DEFINITION_FIELDS",
    "FROZEN_DEFAULTS",
    "PROMPT_FIELDS",
    "Action",
    "Agent",
    "AgentVersion",
    "ApiKey",
    "Approval",
    "ApprovalAudit",
    "Base",
    "Booking",
    "Channel",
    "ChannelApprovalMessage",
    "ChannelChat",
    "ChannelDelivery",
    "ChannelInbound",
    "Conversation",
    "Dataset",
    "DatasetCase",
    "EvalGate",
    "EvalResult",
    "EvalRun",
    "Event",
    "Fault",
    "GuardrailDefaults",
    "GuardrailViolation",
    "Incident",
    "IncidentEntry",
    "IncidentNotice",
    "LlmProvider",
    "LlmUsage",
    "McpServer",
    "MemberToken",
    "Membership",
    "Message",
    "ModelPrice",
    "PromptTemplate",
    "Replay",
    "ReplayConversation",
    "ReplayTurn",
    "Report",
    "Schedule",
    "ScheduleRun",
    "SignInFailure",
    "SloObjective",
    "Slot",
    "Span",
    "Team",
    "TeamAudit",
    "TeamBudget",
    "Ticket",
    "ToolExecution",
    "Turn",
    "UTCDateTime",
    "User",
    "WebSession",
    "new_id",
    "utcnow",
]
