"""Dagster definitions by domain: thin assets and checks over `fundarb_dagster.core` and `sql/`."""

import warnings

from dagster import BetaWarning, PreviewWarning

# backfill_policy, pool and partitioned asset checks are marked beta or preview in Dagster 1.13; they are the
# documented way to do ranged runs and concurrency, so their warnings are noise for users. Set here, before
# any asset module is imported (they warn at import), and by category: the warnings are attributed to our
# modules, not to dagster's.
warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", category=PreviewWarning)
