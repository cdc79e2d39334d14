"""Wire recordings on disk: the two formats a wire replay reads, loaded into frames, sends, HTTP bodies.

- fundarb/cryptofeed sessions: a header line, then `{"t": "connect"|"send"|"recv"|"http"|"markets",
  "conn", "ts" (epoch s), "addr" (url), "data" (raw payload string)}` -- what `live.RawRecorder` writes;
  `http` lines hold a REST response (`url`, `method`, `body` of the request, `data` the response body);
- simple frame logs: `{"recv_ts_s", "conn", "addr", "msg": <decoded payload>}`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..base import EndOfData


class EndOfRecording(EndOfData, EOFError):
    """The wire recording is exhausted: the end of every stream of this exchange (`sources.EndOfData`)."""


def _loads(data: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return data  # text frames such as "pong"


@dataclass(frozen=True)
class Frame:
    ts_s: float  # local receive time, epoch seconds
    conn: str  # the recorded connection it arrived on
    data: str  # the raw payload, as received


@dataclass
class Recording:
    path: str
    frames: list[Frame] = field(default_factory=list)
    conn_urls: dict[str, str] = field(default_factory=dict)  # conn -> the url it connected to
    sends: list[tuple[str, str]] = field(default_factory=list)  # (conn, raw subscription) as recorded
    http: list[tuple[str, str]] = field(default_factory=list)  # (url, response body)
    http_requests: list[tuple[str, str | None]] = field(default_factory=list)  # (method, request body) of each
    markets: list[dict[str, Any]] = field(default_factory=list)  # the live exchange's markets, if recorded
    topics: list[list[str]] = field(default_factory=list)  # per frame, by `WireVenue.index_topics`

    header: dict[str, Any] = field(default_factory=dict)


def _read_lines(path: Path) -> Iterable[str]:
    if path.name.endswith(".zst"):
        import pyarrow as pa

        with pa.input_stream(str(path), compression="zstd") as stream:
            text = stream.read().decode()
        yield from text.splitlines()
        return
    with path.open() as f:
        yield from f


def load_recording(path: str | Path) -> Recording:
    """Read a recorded websocket session (either format, plain or zstd). Bad lines raise, naming the line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"replay.path: wire recording {str(path)!r} does not exist")
    rec = Recording(path=str(path))
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if "msg" in row and "recv_ts_s" in row:  # simple frame log
                if row.get("addr"):
                    rec.conn_urls.setdefault(row["conn"], row["addr"])
                rec.frames.append(Frame(float(row["recv_ts_s"]), str(row["conn"]), json.dumps(row["msg"])))
                continue
            kind = row["t"]
            if kind == "header":
                rec.header = row
            elif kind == "recv":
                data = row["data"]
                rec.frames.append(
                    Frame(float(row["ts"]), str(row["conn"]), data if isinstance(data, str) else json.dumps(data))
                )
            elif kind == "connect":
                rec.conn_urls[str(row["conn"])] = str(row["addr"])
            elif kind == "send":
                rec.sends.append((str(row["conn"]), str(row["data"])))
            elif kind == "http":
                rec.http.append((str(row["url"]), str(row["data"])))
                body = row.get("body")
                rec.http_requests.append((str(row.get("method") or "GET"), None if body is None else str(body)))
            elif kind == "markets":
                rec.markets = list(row["data"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}:{number}: not a wire recording line ({exc!r}): {line[:120]!r}") from None
    if not rec.frames:
        raise ValueError(f"replay.path: wire recording {str(path)!r} holds no received frames")
    return rec
