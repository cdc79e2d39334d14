"""Dagster assets of the funding domain (thin: load inputs, call core/, run sql/, return metadata)."""
