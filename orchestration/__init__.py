"""The Dagster code location: ingest, dbt transforms with their tests as checks, and publish."""
