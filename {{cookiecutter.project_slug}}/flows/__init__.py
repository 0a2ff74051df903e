"""The orchestration layer: Prefect flows and their tasks, thin wiring around the core package.

Not an installed package: Prefect loads these files by path from the project root
(`flows/pipeline.py:pipeline`) on a worker, under `serve` and from the command line alike, so they import
each other as `flows.<module>` and the core by its package name.
"""

from {{ cookiecutter.package_name }}.processes import idle_threads_sleep, quick_exit

quick_exit()  # a flow-run process (under `serve` or a worker) exits without collecting its garbage
idle_threads_sleep()  # before a step imports torch: a worker's machine is shared with its server
