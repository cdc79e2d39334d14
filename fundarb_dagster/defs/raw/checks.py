"""Asset checks of the raw domain, next to their assets."""
