"""The catalog's SQL: migrations (``migrations/NNNN_*.sql``), views (``views.sql``)
and the named statements the store runs (``queries.sql``).

Only :mod:`hquery.store` reads these files; every other module goes through it.
"""
