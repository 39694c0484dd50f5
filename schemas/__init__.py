"""Models that cross a boundary: HTTP bodies, workflow and activity payloads, tables, settings."""
