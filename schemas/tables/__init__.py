"""SQLAlchemy tables, one module per capability. Every row carries its team; ids are opaque strings.

Import tables from here (`from schemas.tables import Agent`); the modules say where each lives.
"""

from schemas.tables.agents import DEFINITION_FIELDS, AgentVersion
from schemas.tables.approvals import Approval, ApprovalAudit
from schemas.tables.base import Base, UTCDateTime, new_id, utcnow
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
from schemas.tables.schedules import Report, Schedule, ScheduleRun
from schemas.tables.spans import Span

__all__ = [
    "DEFINITION_FIELDS",
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
    "Event",
    "Message",
    "Report",
    "Schedule",
    "ScheduleRun",
    "Slot",
    "Span",
    "Team",
    "Ticket",
    "ToolExecution",
    "Turn",
    "UTCDateTime",
    "new_id",
    "utcnow",
]
