"""Asset checks of the market domain, next to their assets."""
