"""Channel inbound: acknowledge fast, lose nothing, start each turn once.

A webhook (or the dev poller) turns each provider update into an `InboundItem`
(`parse`) and hands it to `Inbound.accept` (`dispatch`), which writes one
`channel_inbound` row keyed by the provider's dedupe key (`tg:{channel}:{update_id}`,
`slack:{channel}:{event_id}`, built in `schemas.keys`). Rows from concurrent requests
are written in batches, one INSERT ... ON CONFLICT DO NOTHING each (`writer`), and the
request is acknowledged once its row is committed: a redelivered update finds its key
taken and is acknowledged without touching Temporal. A new row is then handed to its
conversation in the background (`Inbound.dispatch`): rate limit, the chat's conversation
(`chats`), and the `submit` update with the dedupe key as idempotency key and update id,
so a second hand-off (another replica's sweeper, a restart) still starts one turn.
Commands and approval buttons are answered without a turn (`commands`). A row stays
`received` until Temporal has taken it, and the sweeper hands over rows left behind by a
process that died.

- `config`: what the webhooks need of a channel (`ChannelConfig`), cached per process.
- `parse`: Telegram updates, Slack events and Slack button presses as `InboundItem`s.
- `writer`: the batched, driver-level INSERT of inbound rows (`InboundWriter`).
- `dispatch`: `Inbound`: accept, hand each row on, sweep up lost hand-offs.
- `chats`: a chat's conversation, found or opened (on first contact, on /new).
- `commands`: /new, /status, /help, decisions from buttons, and Steward's own notices.
"""
