"""Prefect flows: thin wiring of tasks around the pure core. The only part of the package that imports Prefect."""
