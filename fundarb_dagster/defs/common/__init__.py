"""Dagster helpers every domain shares: table creation and writes (`tables`), the raw landing window
(`landing`), metadata tables and plots (`metadata`), check builders (`checks`). Domains import these, never
each other."""
