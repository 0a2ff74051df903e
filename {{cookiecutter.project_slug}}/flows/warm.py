"""What a flow run under `serve` starts with: the preload of the fork server its runs are forked from.

Prefect's runner starts each run of a served flow in a new interpreter (multiprocessing's *spawn*), which
imports Prefect and the flows, then what its steps need: Great Expectations (3-4 s), torch (1.5 s),
Evidently (4-5 s), in every run, before any work. `serve` has its runs forked instead from a fork server
(multiprocessing's *forkserver*) that imported all of it once, at start-up: this module is what it
imports. A run still gets Prefect's own start (environment, settings, control channel, signals) and a
process of its own; only the imports are shared, copy-on-write.

Imported only there, never by a command: it is the opposite of lazy on purpose.
"""

from __future__ import annotations

import gc
import importlib

import flows.monitoring  # noqa: F401  (the served flows, and through them Prefect)
import flows.retrain  # noqa: F401

# What the steps import when they run (lazily, so that commands stay quick to start).
LIBRARIES = (
    "great_expectations",
    "great_expectations.expectations",
    "evidently",
    "evidently.presets",
    "{{ cookiecutter.package_name }}.training",
    "{{ cookiecutter.package_name }}.evaluation",
    "{{ cookiecutter.package_name }}.serving",
    "{{ cookiecutter.package_name }}.monitoring",
    "{{ cookiecutter.package_name }}.validation",
)

for _name in LIBRARIES:
    try:
        importlib.import_module(_name)
    except Exception:  # noqa: BLE001, S112  (the run that needs it imports it again and fails with the error)
        continue

# Objects that survive to every fork are never collected there: freezing them keeps the children's
# collections from touching (and so copying) the shared pages.
gc.freeze()
