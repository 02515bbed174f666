"""Write docs/settings.md from the settings table (tricorn/settings.py).

Usage: python scripts/gen_settings_doc.py          # rewrite the file
       python scripts/gen_settings_doc.py --check  # exit 1 if the file is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tricorn.settings import render_settings_doc  # noqa: E402

DOC = ROOT / "docs" / "settings.md"


def main(argv: list[str]) -> int:
    text = render_settings_doc()
    if "--check" in argv:
        current = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
        if current != text:
            print(f"{DOC.relative_to(ROOT)} is out of date: run python scripts/gen_settings_doc.py")
            return 1
        return 0
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
