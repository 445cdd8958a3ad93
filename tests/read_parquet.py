"""Independent reader for the type-matrix test: prints every value of the Parquet files in
a directory as canonical text (the same forms tests/it/support.rs produces), as JSON.

Usage: python tests/read_parquet.py DIR  →  {"column": ["text or null", ...], ...} sorted by id
(or by the first column when there is none).
Forms: bool true/false; ints decimal; floats the IEEE bits as decimal (NaN: "NaN");
decimals minimal text; strings as is; bytes hex; date days since epoch; time and timestamp
microseconds; lists a JSON array of element forms.
"""
import decimal
import json
import pathlib
import struct
import sys

import pyarrow as pa
import pyarrow.parquet as pq

decimal.getcontext().prec = 200


def canonical(value, dtype):
    if value is None:
        return None
    if pa.types.is_boolean(dtype):
        return "true" if value else "false"
    if pa.types.is_integer(dtype):
        return str(value)
    if pa.types.is_floating(dtype):
        if value != value:
            return "NaN"
        return str(struct.unpack("<Q", struct.pack("<d", float(value)))[0])
    if pa.types.is_decimal(dtype):
        text = format(value, "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return "0" if text in ("-0", "") else text
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return value
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype):
        return value.hex()
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        return json.dumps([canonical(v, dtype.value_type) for v in value], ensure_ascii=False, separators=(",", ":"))
    raise TypeError(f"no canonical form for {dtype}")


def raw_integers(column):
    """Dates, times and timestamps as their stored integers (datetime objects lose range)."""
    dtype = column.type
    if pa.types.is_date32(dtype):
        return column.cast(pa.int32()).to_pylist(), pa.int32()
    if pa.types.is_time64(dtype) or pa.types.is_timestamp(dtype):
        assert dtype.unit == "us", dtype
        return column.cast(pa.int64()).to_pylist(), pa.int64()
    return column.to_pylist(), dtype


def main():
    files = sorted(pathlib.Path(sys.argv[1]).glob("**/*.parquet"))
    table = pa.concat_tables([pq.read_table(f) for f in files])
    table = table.sort_by("id" if "id" in table.column_names else table.column_names[0])
    out = {}
    for name in table.column_names:
        values, dtype = raw_integers(table.column(name).combine_chunks())
        out[name] = [canonical(v, dtype) for v in values]
    json.dump(out, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
