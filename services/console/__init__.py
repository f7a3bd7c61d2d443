"""The operations console: an event log of every event, pages for operators, the CLI."""
