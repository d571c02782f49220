"""``python -m bench``: run every ``bench/*.py`` that defines ``main()`` and print each result as JSON."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import sys
from pathlib import Path


def main() -> int:
    failed = 0
    for module_info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"bench.{module_info.name}")
        entry = getattr(module, "main", None)
        if not callable(entry):
            continue
        try:
            result = entry([]) if inspect.signature(entry).parameters else entry()
        except Exception as exc:  # noqa: BLE001 - one failing benchmark must not hide the others
            failed += 1
            result = {"benchmark": module_info.name, "error": f"{type(exc).__name__}: {exc}"}
        if result is not None:  # a main() that printed its own output
            print(json.dumps(result, indent=2), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
