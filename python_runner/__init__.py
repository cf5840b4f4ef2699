"""A Postgres-native ETL orchestrator: the database decides, this package executes and reports."""

__version__ = "0.1.0"
