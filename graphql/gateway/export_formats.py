"""How an export's Arrow record batches become CSV, NDJSON or Parquet bytes, batch by batch.

CSV (RFC 4180 quoting, written by Arrow's CSV writer) is safe to open in a spreadsheet and keeps
every value's type and nullness:

- text is always quoted; a text cell starting with `=`, `+`, `-`, `@`, TAB or CR gets a leading
  `'`, so no spreadsheet runs it as a formula (OWASP, "CSV Injection");
- numbers and booleans are written as they are (`-5` stays a number), booleans as `true`/`false`;
- NULL is an empty, unquoted field; the empty string is `""`;
- timestamps are ISO 8601 exactly as GraphQL serialises them (`2026-01-01T05:00:00`, fraction only
  when not zero, `+00:00` offsets); dates are `YYYY-MM-DD`;
- other types (lists, structs, ...) are their JSON text, then treated as text.

NDJSON writes one JSON object per row with the same timestamp and date forms; Parquet keeps the
snapshot's own types.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

Encode = Callable[[pa.RecordBatch], bytes]
Finish = Callable[[], bytes]

FORMULA_START = "^[=+\\-@\t\r]"  # OWASP: cells a spreadsheet may evaluate


class _Sink:
    """A write-only file for pyarrow writers that hands written bytes to the response as they come."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.position = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data, self.chunks = b"".join(self.chunks), []
        return data


def neutralise(text: pa.Array) -> pa.Array:
    """Text cells a spreadsheet would evaluate as a formula, prefixed with `'` (nulls stay null)."""
    risky = pc.match_substring_regex(text, FORMULA_START)
    return pc.if_else(risky, pc.binary_join_element_wise("'", text, ""), text)


def iso_timestamps(values: pa.Array) -> pa.Array:
    """Timestamps as `datetime.isoformat()` writes them (what GraphQL's DateTime returns)."""
    zone = values.type.tz is not None
    text = pc.strftime(values, format="%Y-%m-%dT%H:%M:%S%z" if zone else "%Y-%m-%dT%H:%M:%S")
    text = pc.replace_substring_regex(text, r"\.0+(\+|-|$)", r"\1")  # no fraction when it is zero
    if zone:
        text = pc.replace_substring_regex(text, r"([+-]\d\d)(\d\d)$", r"\1:\2")
    return text


def _as_json_text(values: pa.Array) -> pa.Array:
    return pa.array([None if v is None else json.dumps(v, default=_json_default) for v in values.to_pylist()])


def csv_column(values: pa.Array) -> pa.Array:
    """One column as the CSV writer should see it (see the module docstring)."""
    kind = values.type
    if pa.types.is_timestamp(kind):
        return iso_timestamps(values)
    if pa.types.is_large_string(kind) or pa.types.is_string(kind):
        return neutralise(values)
    if pa.types.is_dictionary(kind):
        return csv_column(values.cast(kind.value_type))
    if (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_decimal(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_date(kind)
        or pa.types.is_null(kind)
    ):
        return values
    return neutralise(_as_json_text(values))


def _csv_encoder(columns: list[str]) -> tuple[Encode, Finish]:
    sink = _Sink()
    holder: dict[str, Any] = {}

    def encode(batch: pa.RecordBatch) -> bytes:
        safe = pa.RecordBatch.from_arrays([csv_column(c) for c in batch.columns], names=batch.schema.names)
        if "writer" not in holder:
            options = pa_csv.WriteOptions(include_header=True, quoting_style="needed")
            holder["writer"] = pa_csv.CSVWriter(sink, safe.schema, write_options=options)
        holder["writer"].write_batch(safe)
        return sink.take()

    def finish() -> bytes:
        if "writer" not in holder:  # no rows: the header alone, quoted like the writer quotes it
            return (",".join(json.dumps(c) for c in columns) + "\n").encode()
        holder["writer"].close()
        return sink.take()

    return encode, finish


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _ndjson_encoder() -> tuple[Encode, Finish]:
    def encode(batch: pa.RecordBatch) -> bytes:
        rows = batch.to_pylist()
        return "".join(json.dumps(row, default=_json_default) + "\n" for row in rows).encode()

    return encode, lambda: b""


def _parquet_encoder() -> tuple[Encode, Finish]:
    sink = _Sink()
    holder: dict[str, Any] = {}

    def encode(batch: pa.RecordBatch) -> bytes:
        if "writer" not in holder:
            holder["writer"] = pq.ParquetWriter(sink, batch.schema, compression="zstd")
        holder["writer"].write_batch(batch)
        return sink.take()

    def finish() -> bytes:
        if "writer" in holder:
            holder["writer"].close()
        return sink.take()

    return encode, finish


def encoder(fmt: str, columns: list[str]) -> tuple[Encode, Finish]:
    """(encode(batch) -> bytes, finish() -> bytes) for one export format: `csv`, `json`, `parquet`."""
    if fmt == "csv":
        return _csv_encoder(columns)
    if fmt == "json":
        return _ndjson_encoder()
    return _parquet_encoder()
