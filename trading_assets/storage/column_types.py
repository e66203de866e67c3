"""Column type compatibility: when an output column may be written into a stored column.

The rule: an output column may be written into a stored column when every value it can hold is
represented exactly (or, int -> DOUBLE, as closely as prices need) by the stored type:

* identical types (after aliases) are compatible;
* an integer into a wider integer whose range contains it (INTEGER -> BIGINT, UTINYINT ->
  SMALLINT), an integer, FLOAT or DECIMAL into DOUBLE, a small integer into FLOAT;
* naive timestamps of any precision into TIMESTAMP (pandas' nanoseconds are incidental; tables
  store microseconds); TIMESTAMPTZ only into TIMESTAMPTZ;
* anything else (DOUBLE -> BIGINT, VARCHAR -> DOUBLE, DATE <-> TIMESTAMP, DATE <-> VARCHAR,
  BOOLEAN -> INTEGER, ...) is a SchemaMismatchError: a silent cast there changes meaning.

New tables and columns take the output's type, with naive timestamps stored as TIMESTAMP.
"""

from __future__ import annotations

_ALIASES = {
    "INT": "INTEGER",
    "INT4": "INTEGER",
    "SIGNED": "INTEGER",
    "INT1": "TINYINT",
    "INT2": "SMALLINT",
    "SHORT": "SMALLINT",
    "INT8": "BIGINT",
    "LONG": "BIGINT",
    "INT16": "HUGEINT",
    "INT128": "HUGEINT",
    "FLOAT8": "DOUBLE",
    "FLOAT4": "FLOAT",
    "REAL": "FLOAT",
    "TEXT": "VARCHAR",
    "STRING": "VARCHAR",
    "CHAR": "VARCHAR",
    "BPCHAR": "VARCHAR",
    "BOOL": "BOOLEAN",
    "LOGICAL": "BOOLEAN",
    "DATETIME": "TIMESTAMP",
    "TIMESTAMP_US": "TIMESTAMP",
    "TIMESTAMP_NS": "TIMESTAMP",
    "TIMESTAMP_MS": "TIMESTAMP",
    "TIMESTAMP_S": "TIMESTAMP",
    "TIMESTAMP WITHOUT TIME ZONE": "TIMESTAMP",
    "TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE",
}

_INTEGER_RANGES = {
    "TINYINT": (-(2**7), 2**7 - 1),
    "SMALLINT": (-(2**15), 2**15 - 1),
    "INTEGER": (-(2**31), 2**31 - 1),
    "BIGINT": (-(2**63), 2**63 - 1),
    "HUGEINT": (-(2**127), 2**127 - 1),
    "UTINYINT": (0, 2**8 - 1),
    "USMALLINT": (0, 2**16 - 1),
    "UINTEGER": (0, 2**32 - 1),
    "UBIGINT": (0, 2**64 - 1),
    "UHUGEINT": (0, 2**128 - 1),
}

# FLOAT has a 24-bit mantissa: integers of up to 16 bits fit exactly.
_FLOAT_EXACT_INTEGERS = ("TINYINT", "SMALLINT", "UTINYINT", "USMALLINT")


def canonical_type(sql_type: str) -> str:
    """A DuckDB/SQL type name with aliases resolved (``INT8`` -> ``BIGINT``, ``TIMESTAMP_NS`` ->
    ``TIMESTAMP``), upper-case. Parametrised and nested types are only upper-cased."""
    name = " ".join(sql_type.strip().upper().split())
    return _ALIASES.get(name, name)


def is_safe_cast(new_type: str, stored_type: str) -> bool:
    """Whether output values of ``new_type`` may be inserted into a column of ``stored_type``."""
    new, stored = canonical_type(new_type), canonical_type(stored_type)
    if new == stored:
        return True
    if new in _INTEGER_RANGES:
        if stored in _INTEGER_RANGES:
            lo, hi = _INTEGER_RANGES[new]
            stored_lo, stored_hi = _INTEGER_RANGES[stored]
            return stored_lo <= lo and hi <= stored_hi
        if stored == "DOUBLE":
            return True
        if stored == "FLOAT":
            return new in _FLOAT_EXACT_INTEGERS
        return False
    if stored == "DOUBLE":
        return new == "FLOAT" or new.startswith("DECIMAL")
    return False
