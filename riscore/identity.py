"""What of a method config the run identity (config hash) covers.

A config class may list options added after records were committed in a class variable
`ADDED_OPTION_DEFAULTS` (option -> the behaviour earlier runs had); at those values the option is left out, so
adding an option leaves earlier records where they are (the suites' ADDED_KEY_DEFAULTS does the same for
suite keys). Nested configs (a combination's parts) are treated the same way.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def config_identity(config: Any) -> dict[str, Any]:
    """`dataclasses.asdict(config)` less the added options at their earlier values, at every level."""
    values = dataclasses.asdict(config)
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            values[f.name] = config_identity(value)
    added = getattr(type(config), "ADDED_OPTION_DEFAULTS", {})
    return {k: v for k, v in values.items() if k not in added or v != added[k]}
