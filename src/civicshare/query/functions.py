"""The functions a governed query may call: an allow-list, never a deny-list.

Names are sqlglot's canonical keys for functions it knows (``type(node).key``) and DuckDB's own
names for the ones it does not (``exp.Anonymous``). Anything else (table functions, catalog
functions such as ``duckdb_tables()``, settings, variables, file or network access) is refused
before DuckDB sees the query, so a new DuckDB function is unusable until someone lists it here.
"""

from __future__ import annotations

AGGREGATES = frozenset(
    {
        "count", "sum", "avg", "min", "max", "median", "stddev", "stddevsamp", "stddevpop",
        "variance", "variancepop", "percentilecont", "percentiledisc", "quantile",
        "approxdistinct", "arrayagg", "groupconcat", "logicaland", "logicalor", "anyvalue",
        "first", "last", "countif", "corr", "covarpop", "covarsamp", "mode", "argmax", "argmin",
    }
)  # fmt: skip

WINDOWS = frozenset(
    {
        "rownumber", "rank", "denserank", "lag", "lead", "firstvalue", "lastvalue", "nthvalue",
        "ntile", "percentrank", "cumedist",
    }
)  # fmt: skip

SCALARS = frozenset(
    {
        # numbers
        "abs", "ceil", "floor", "round", "sqrt", "ln", "log", "exp", "pow", "sign", "trunc",
        "isnan", "isinf", "greatest", "least", "round_even", "log10", "log2", "cbrt",
        # conditionals and types
        "coalesce", "nullif", "if", "cast", "trycast", "typeof", "ifnull",
        # text
        "upper", "lower", "length", "substring", "trim", "ltrim", "rtrim", "concat", "concatws",
        "replace", "left", "right", "strposition", "pad", "regexplike", "regexpextract",
        "regexpreplace", "splitpart", "split", "reverse", "repeat", "startswith", "contains",
        "prefix", "suffix", "initcap", "levenshtein", "jarowinklersimilarity", "format",
        "strpos", "instr", "lpad", "rpad", "ascii", "chr", "unicode",
        # dates and times
        "timestamptrunc", "datetrunc", "extract", "year", "month", "day", "dayofweek",
        "dayofyear", "week", "weekofyear", "quarter", "dateadd", "datesub", "datediff",
        "date_part", "datepart", "timetostr", "strtotime", "strtodate", "datefromparts",
        "timetounix", "lastday", "dayname", "monthname", "dayofweekiso", "yearweek", "datebin",
        "currentdate", "currenttimestamp", "date", "tsordstodate", "makedate", "age",
        "isodow", "isoyear", "epoch", "to_days", "to_months", "to_years", "date_trunc",
        # structures (they only ever hold what the policy view already shows)
        "struct", "array", "arraysize", "explode", "arraycontains", "to_json", "columns",
        "list_sort", "list_distinct", "list_extract", "struct_extract", "arrayfilter",
        "transform", "lambda",
    }
)  # fmt: skip

ALLOWED = AGGREGATES | WINDOWS | SCALARS
