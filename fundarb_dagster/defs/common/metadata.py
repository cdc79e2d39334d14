"""What the UI shows of a materialization: column schemas, tables, headline numbers and plots.

What a trader reads first is a `MetadataValue.table` with a `TableSchema` (shown inline on the asset page, no
click): every column's unit is in its name and description, fractions are shown in percent (`_pct`), USD
with thousands separators. Headline figures are plain numbers with their unit in the key
(`best_net_carry_apr_pct`), so the Plots tab charts them over runs. Plots (base64 PNG in Markdown, behind
"Show Markdown") come second, where a picture says more than the table beside it.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd
from dagster import MetadataValue, TableColumn, TableRecord, TableSchema

from ...core.tables import table


def column_schema(name: str) -> TableSchema:
    """`dagster/column_schema` metadata of a warehouse table (core/tables.py), shown in the UI."""
    return TableSchema(columns=[TableColumn(c.name, c.kind, description=c.description) for c in table(name).columns])


@dataclass(frozen=True)
class Unit:
    """How a column of one unit is shown: scaled, rounded, its name suffixed, its unit in the description."""

    suffix: str  # appended to the column name unless it already ends with it
    scale: float
    digits: int
    text: str
    kind: str = "float"


UNITS: Final = {
    "pct": Unit("_pct", 100.0, 2, "percent (a fraction x 100; APRs are simple annual rates)"),
    "bps": Unit("_bps", 1.0, 1, "basis points (1/100 of a percent)"),
    "usd": Unit("_usd", 1.0, 0, "USD, thousands separated", kind="string"),
    "h": Unit("_h", 1.0, 1, "hours"),
    "ratio": Unit("", 1.0, 2, "ratio (no unit)"),
}


def shown_name(name: str, unit: str) -> str:
    """The column's name in the UI: its unit suffix added where the stored name does not carry it."""
    suffix = UNITS[unit].suffix
    return name if not suffix or name.endswith(suffix) else f"{name}{suffix}"


def metadata_table(
    frame: pd.DataFrame,
    units: Mapping[str, str] | None = None,
    descriptions: Mapping[str, str] | None = None,
    max_rows: int = 30,
) -> MetadataValue:
    """A frame as a `MetadataValue.table` with a `TableSchema`, shown inline on the asset page.

    `units` maps a column to a key of `UNITS` (`pct` for fractions, `bps`, `usd`, `h`, `ratio`); other
    columns keep their type (numbers to 4 significant digits, times as `YYYY-MM-DD HH:MM` UTC). The first
    `max_rows` rows are shown; the rows are the caller's order (a ranking stays ranked)."""
    units = dict(units or {})
    descriptions = dict(descriptions or {})
    unknown = sorted(set(units) - set(frame.columns))
    if unknown:
        raise KeyError(f"units: columns {unknown} are not in the frame ({list(frame.columns)})")
    bad = {c: u for c, u in units.items() if u not in UNITS}
    if bad:
        raise KeyError(f"units: {bad} not among {list(UNITS)}")
    columns, cells = [], []
    for name in frame.columns:
        unit = UNITS[units[name]] if name in units else None
        label = shown_name(name, units[name]) if name in units else name
        kind, convert = (unit.kind, _unit_cell(unit)) if unit else _plain_cell(frame[name])
        about = "; ".join(t for t in (unit.text if unit else "", descriptions.get(name, "")) if t)
        columns.append(TableColumn(label, kind, description=about or None))
        cells.append((name, label, convert))
    records = [
        TableRecord({label: convert(row[name]) for name, label, convert in cells})
        for row in frame.head(max_rows).to_dict("records")
    ]
    return MetadataValue.table(records=records, schema=TableSchema(columns=columns))


def _missing(value: Any) -> bool:
    return value is None or value is pd.NaT or (isinstance(value, float | np.floating) and not np.isfinite(value))


def _unit_cell(unit: Unit) -> Any:
    def convert(value: Any) -> Any:
        if _missing(value):
            return None
        number = float(value) * unit.scale
        if unit.kind == "string":  # USD: thousands separators, cents only below 100
            return f"{number:,.{2 if abs(number) < 100 else unit.digits}f}"
        return round(number, unit.digits)

    return convert


def _plain_cell(series: pd.Series) -> tuple[str, Any]:
    """The column type and converter of a column without a unit, from its dtype."""
    if pd.api.types.is_bool_dtype(series):
        return "bool", lambda v: None if _missing(v) else bool(v)
    if pd.api.types.is_integer_dtype(series):
        return "int", lambda v: None if _missing(v) else int(v)
    if pd.api.types.is_float_dtype(series):
        return "float", lambda v: None if _missing(v) else float(f"{float(v):.4g}")
    if pd.api.types.is_datetime64_any_dtype(series):
        return "string", lambda v: None if _missing(v) else f"{pd.Timestamp(v):%Y-%m-%d %H:%M}"
    return "string", lambda v: None if _missing(v) else str(v)


def number(value: Any, unit: str = "", digits: int = 4) -> MetadataValue:
    """A headline figure as typed numeric metadata (charted over runs in the Plots tab), in `unit`'s scale.

    A missing or infinite value is `MetadataValue.null()`, not a made-up zero."""
    if _missing(value):
        return MetadataValue.null()
    if not unit:
        return MetadataValue.float(round(float(value), digits))
    shown = UNITS[unit]
    places = shown.digits if shown.kind == "float" else 2  # USD: to the cent
    return MetadataValue.float(round(float(value) * shown.scale, places))


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
