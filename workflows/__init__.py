"""Workflow classes (deterministic: no I/O, no settings; every side effect is an activity), and the contract.

- `contract`: every workflow id, and every way Steward starts or asks a workflow.
- `conversation`: `ConversationWorkflow`, one per conversation; `turn`: the turn it runs.
- `approval`: `ApprovalWorkflow`, an inbox item (child of the conversation).
- `channel`: delivering what a turn says to its chat; `ChannelDeliveryWorkflow`.
- `ambient`: `AmbientRunWorkflow`, one run of a schedule.
- `maintenance`: `PruneEventsWorkflow`, the event log's retention.
"""
