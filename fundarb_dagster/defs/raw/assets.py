"""Dagster assets of the raw domain (thin: load inputs, call core/, run sql/, return metadata)."""
