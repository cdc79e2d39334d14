"""Dagster assets of the risk domain (thin: load inputs, call core/, run sql/, return metadata)."""
