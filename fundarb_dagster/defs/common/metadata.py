"""What the UI shows of a materialization: column schemas, small Markdown tables and plots (base64 PNG in
Markdown, behind "Show Markdown")."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from dagster import MetadataValue, TableColumn, TableSchema

from ...core.tables import table


def column_schema(name: str) -> TableSchema:
    """`dagster/column_schema` metadata of a warehouse table (core/tables.py), shown in the UI."""
    return TableSchema(columns=[TableColumn(c.name, c.kind, description=c.description) for c in table(name).columns])


def md_table(rows: pd.DataFrame | Mapping[str, Any], max_rows: int = 30, digits: int = 6) -> MetadataValue:
    """A frame, or a name -> value mapping (shown as `metric | value`), as a Markdown table."""
    frame = pd.DataFrame({"metric": list(rows), "value": list(rows.values())}) if isinstance(rows, Mapping) else rows
    if frame.empty:
        return MetadataValue.md("_no rows_")
    shown = frame.head(max_rows)
    lines = ["| " + " | ".join(map(str, shown.columns)) + " |", "|" + "---|" * len(shown.columns)]
    for row in shown.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v, digits) for v in row) + " |")
    if len(frame) > max_rows:
        lines.append(f"\n_{len(frame) - max_rows} more rows_")
    return MetadataValue.md("\n".join(lines))


def _cell(value: Any, digits: int) -> str:
    if isinstance(value, float | np.floating):
        return "" if np.isnan(value) else f"{value:,.{digits}g}"
    return "" if value is None or value is pd.NaT else str(value)


def figure(width: float = 8, height: float = 3.5) -> tuple[Any, Any]:
    """A matplotlib figure and axes on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def figure_png(fig: Any, dpi: int = 80) -> bytes:
    """A figure as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def png_md(png: bytes, title: str, heading: bool = False) -> MetadataValue:
    """PNG bytes as a base64 image inside Markdown, with the title as a heading above it if asked."""
    image = f"![{title}](data:image/png;base64,{base64.b64encode(png).decode()})"
    return MetadataValue.md(f"### {title}\n\n{image}" if heading else image)
