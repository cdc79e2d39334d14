-- Gaps and stalls the capture job reported, ending within the look-back [$start, $end).
SELECT exchange, symbol, stream, kind, start_ms, end_ms, reason, ts
FROM capture_events
WHERE end_ms >= $start_ms AND end_ms < $end_ms
