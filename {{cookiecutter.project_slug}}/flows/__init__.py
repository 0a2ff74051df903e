"""The orchestration layer: Prefect flows and their tasks, thin wiring around the core package.

Not an installed package: Prefect loads these files by path from the project root
(`flows/pipeline.py:pipeline`) on a worker, under `serve` and from the command line alike, so they import
each other as `flows.<module>` and the core by its package name.
"""
