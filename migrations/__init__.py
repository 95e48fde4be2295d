"""Ordered schema migrations (playhouse.migrations): NNNN_name.py files with up(migrator, db).

Shipped inside the wheel as the `fsbill.migrations` package (see pyproject.toml) and applied
by `fsbill db upgrade` (and by `fsbill serve` at start when `auto_migrate` is on).
"""
