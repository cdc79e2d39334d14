"""Dagster assets of the alerts domain (thin: load inputs, call core/, run sql/, return metadata)."""
