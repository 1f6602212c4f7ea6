"""Reading the small JSON files a run or an artifact is described by, with one-line errors.

Standard library only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_json_object(path: Path, error: type[Exception], missing: str) -> dict[str, Any]:
    """The JSON object in ``path``; ``error(one line naming the file)`` if it is absent, not JSON or not an
    object. ``missing`` says what the file was expected to be part of."""
    if not path.is_file():
        raise error(f"{path}: missing ({missing})")
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise error(f"{path}: must hold a JSON object, got {type(value).__name__}")
    return value
