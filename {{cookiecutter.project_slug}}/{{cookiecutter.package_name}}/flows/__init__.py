"""Prefect flows: thin task wiring around the pure core; the only part of the package importing Prefect."""
