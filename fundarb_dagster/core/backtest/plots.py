"""Plots of backtest results as PNG bytes (matplotlib, Agg backend); defs/common/metadata embeds them."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def equity_drawdown_png(equity: pd.DataFrame, title: str = "equity") -> bytes:
    """Equity (top) and drawdown (bottom) over time, from a frame with `ts, equity, drawdown`."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot(equity["ts"], equity["equity"], color="tab:blue", lw=1)
    top.set_ylabel("equity (USD)")
    top.set_title(title)
    top.grid(alpha=0.3)
    bottom.fill_between(equity["ts"], -100 * equity["drawdown"], 0, color="tab:red", alpha=0.5)
    bottom.set_ylabel("drawdown %")
    bottom.grid(alpha=0.3)
    fig.autofmt_xdate()
    return _png(fig)


def attribution_png(equity: pd.DataFrame, attribution: dict[str, float]) -> bytes:
    """Cumulative PnL by source over time (left) and the totals (right). Costs are drawn negative."""
    signs = {"basis": 1, "funding": 1, "borrow": -1, "fees": -1, "slippage": -1, "liquidation": -1}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 2]})
    for name, sign in signs.items():
        col = f"{name}_pnl"
        if col in equity:
            left.plot(equity["ts"], sign * equity[col].cumsum(), lw=1, label=name)
    left.legend(fontsize=8)
    left.set_title("cumulative PnL by source (USD)")
    left.grid(alpha=0.3)
    names = [n for n in signs if n in attribution]
    values = [signs[n] * attribution[n] for n in names]
    right.barh(names, values, color=["tab:green" if v >= 0 else "tab:red" for v in values])
    right.axvline(0, color="k", lw=0.5)
    right.set_title("total by source (USD)")
    fig.autofmt_xdate()
    return _png(fig)


def heatmap_png(table: pd.DataFrame, x: str, y: str, metric: str) -> bytes:
    """Heat map of `metric` over two grid axes (mean over the other axes of the grid)."""
    pivot = table.pivot_table(index=y, columns=x, values=metric, aggfunc="mean")
    fig, ax = plt.subplots(figsize=(1.2 * pivot.shape[1] + 3, 0.6 * pivot.shape[0] + 2))
    data = pivot.to_numpy(dtype=float)
    image = ax.imshow(data, cmap="RdYlGn", aspect="auto", origin="lower")
    ax.set_xticks(range(pivot.shape[1]), [f"{v:g}" for v in pivot.columns])
    ax.set_yticks(range(pivot.shape[0]), [f"{v:g}" for v in pivot.index])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    for (i, j), v in np.ndenumerate(data):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(image, ax=ax, label=metric)
    ax.set_title(f"{metric} over {y} x {x}")
    return _png(fig)
