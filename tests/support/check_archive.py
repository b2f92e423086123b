"""Reads an emoflow Parquet archive (or an export) with readers emoflow did not write, DuckDB
and pyarrow, and checks it against what the test expects: usage
check_archive.py PATH EXPECTED.json, where EXPECTED holds "rows", "positions" ([partition,
offset] pairs), "emoji_counts" and "hive" (true for an archive directory). Prints what it read;
exits 1 naming the first difference."""

import json
import os
import sys

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq


def fail(msg: str) -> int:
    print(f"archive check failed: {msg}", file=sys.stderr)
    return 1


def main() -> int:
    path, expected_path = sys.argv[1], sys.argv[2]
    with open(expected_path) as f:
        want = json.load(f)
    hive = want["hive"]

    # Every file is Parquet with one and the same schema; nothing half-written is left.
    files = []
    for root, _, names in os.walk(path) if hive else [(os.path.dirname(path), [], [os.path.basename(path)])]:
        for name in names:
            files.append(os.path.join(root, name))
    stray = [f for f in files if not f.endswith(".parquet")]
    if stray:
        return fail(f"files that are not Parquet: {stray[:5]}")
    want_schema = pa.schema([
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("emoji", pa.string()),
        pa.field("tier", pa.string()),
        pa.field("amount", pa.float64()),
        pa.field("ts", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("kafka_partition", pa.int32(), nullable=False),
        pa.field("kafka_offset", pa.int64(), nullable=False),
    ])
    for f in files:
        schema = pq.read_schema(f)
        if not schema.equals(want_schema):
            return fail(f"{f} has schema {schema}, not {want_schema}")
        if pq.ParquetFile(f).metadata.row_group(0).column(0).compression != "ZSTD":
            return fail(f"{f} is not zstd-compressed")
        if hive:
            hour_dir = os.path.basename(os.path.dirname(f))
            date_dir = os.path.basename(os.path.dirname(os.path.dirname(f)))
            if not (date_dir.startswith("date=") and hour_dir.startswith("hour=")):
                return fail(f"{f} is not in a date=/hour= directory")

    # pyarrow, with the Hive partitions as columns.
    if hive:
        table = ds.dataset(path, format="parquet", partitioning="hive").to_table()
        for col in ("date", "hour"):
            if col not in table.column_names:
                return fail(f"pyarrow sees no Hive column {col}")
    else:
        table = pq.read_table(path)
    if table.schema.field("ts").type != pa.timestamp("ms", tz="UTC"):
        return fail(f"ts is {table.schema.field('ts').type}")
    if table.num_rows != want["rows"]:
        return fail(f"pyarrow reads {table.num_rows} rows, want {want['rows']}")
    got_positions = sorted(zip(table.column("kafka_partition").to_pylist(), table.column("kafka_offset").to_pylist()))
    if got_positions != sorted(tuple(p) for p in want["positions"]):
        return fail("pyarrow: the (kafka_partition, kafka_offset) pairs differ from the accepted events'")

    # DuckDB.
    con = duckdb.connect()
    source = f"read_parquet('{path}/**/*.parquet', hive_partitioning = true)" if hive else f"read_parquet('{path}')"
    rows, distinct = con.execute(
        f"SELECT count(*), count(DISTINCT (kafka_partition, kafka_offset)) FROM {source}"
    ).fetchone()
    if rows != want["rows"] or distinct != want["rows"]:
        return fail(f"DuckDB reads {rows} rows, {distinct} distinct positions; want {want['rows']}")
    ts_type = con.execute(f"SELECT typeof(ts) FROM {source} LIMIT 1").fetchone()
    if want["rows"] and ts_type[0] != "TIMESTAMP WITH TIME ZONE":
        return fail(f"DuckDB reads ts as {ts_type[0]}")
    counts = dict(con.execute(f"SELECT emoji, count(*) FROM {source} WHERE emoji IS NOT NULL GROUP BY emoji").fetchall())
    if counts != want["emoji_counts"]:
        return fail(f"DuckDB per-emoji counts differ: {counts} vs {want['emoji_counts']}")
    print(f"ok: {len(files)} files, {rows} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
