"""What every source kind shares, in a module of its own so that sources never import the package that
opens them (`sources/__init__.py` imports each kind lazily in `open_exchange`)."""

from __future__ import annotations

import functools


class EndOfData(Exception):  # noqa: N818 - a normal end of a recording, not an error condition to retry
    """A recorded source (replay, wire replay) has no more data for this call: the recording is exhausted.

    Deliberately not a ccxt error: a consumer that retries ccxt network errors must stop here, not retry.
    """


@functools.cache
def ccxt_pro_subclass(mixin: type, exchange_id: str) -> type:
    """`<Mixin prefix><Venue>`: `mixin` over the real `ccxt.pro.<venue>` class (one class per pair, cached), the
    way the live, wire and REST replay sources change one layer of ccxt and keep the rest."""
    import ccxt.pro

    base = getattr(ccxt.pro, exchange_id, None)
    if not isinstance(base, type):
        raise ValueError(f"exchange_id: {exchange_id!r} is not a ccxt.pro exchange")
    prefix = mixin.__name__.removesuffix("ExchangeMixin").removesuffix("Mixin")
    return type(f"{prefix}{base.__name__}", (mixin, base), {})
