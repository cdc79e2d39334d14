"""Asset checks of the risk domain, next to their assets."""
