"""Asset checks of the funding domain, next to their assets."""
