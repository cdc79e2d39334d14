"""What every source kind shares, in a module of its own so that sources never import the package that
opens them (`sources/__init__.py` imports each kind lazily in `open_exchange`)."""

from __future__ import annotations


class EndOfData(Exception):  # noqa: N818 - a normal end of a recording, not an error condition to retry
    """A recorded source (replay, wire replay) has no more data for this call: the recording is exhausted.

    Deliberately not a ccxt error: a consumer that retries ccxt network errors must stop here, not retry.
    """
