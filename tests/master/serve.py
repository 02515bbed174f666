"""``python -m tests.master.serve APP [SETTINGS_JSON]``: run the master on APP.

Settings ``Config()`` does not take yet (the master's own: pid, bind, ...) are set as
attributes, which is how the master reads them.
"""

from __future__ import annotations

import inspect
import json
import sys


def main() -> None:
    from tricorn.config import Config
    from tricorn.master.arbiter import Arbiter

    settings = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    accepted = inspect.signature(Config).parameters
    extra = {name: settings.pop(name) for name in list(settings) if name not in accepted}
    config = Config(sys.argv[1], **settings)
    for name, value in extra.items():
        setattr(config, name, value)
    sys.exit(Arbiter(config).run())


if __name__ == "__main__":
    main()
