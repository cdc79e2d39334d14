"""Raw domain: the landing zone's streams as deduplicated hourly DuckDB tables, plus the instrument registry."""
