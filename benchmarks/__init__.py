"""Benchmarks of dbos_async against the physical limit of the Postgres server they run on."""
