"""Asset checks of the alerts domain, next to their assets."""
