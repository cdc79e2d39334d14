"""Asset checks of the backtest domain, next to their assets."""
