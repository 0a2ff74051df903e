"""Canonical JSON: the one way the project turns a value into bytes that are hashed or compared.

Sorted keys, no whitespace, UTF-8 as is: equal values give equal bytes, so equal ids (store objects, config
fingerprints, model file headers).
"""

from __future__ import annotations

import json
from typing import Any


def canonical_json(value: Any) -> bytes:
    """`value` as stable JSON bytes (sorted keys, no whitespace variation; NaN kept as JSON's NaN token)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True
    ).encode()
