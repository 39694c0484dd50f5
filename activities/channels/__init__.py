"""Channels: Telegram and Slack clients, outbound delivery, and approval requests in ops chats."""
