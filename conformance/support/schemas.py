"""The JSON Schemas of `schemas/json/`, as an outside developer has them:
validators for the contract's messages and for each reference aggregate's
commands and events."""

import json
from pathlib import Path

import jsonschema

# The checkout's schema files; `--schemas DIR` points elsewhere.
DEFAULT_DIR = Path(__file__).resolve().parent.parent.parent / "schemas" / "json"

# The top-level keyword naming the contract version in every file.
CONTRACT_KEYWORD = "x-jetsource-contract"
# The top-level keyword naming the event version of an events file.
EVENT_VERSION_KEYWORD = "x-jetsource-event-version"


# The formats the files name beyond JSON Schema's own: the integer
# widths of the Rust types they are generated from.
FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("uint64")
def _uint64(value) -> bool:
    return not isinstance(value, int) or isinstance(value, bool) or 0 <= value < 2**64


class Schemas:
    """Every schema file under one folder, by path relative to it
    (`command_reply`, `blogpost/events`)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.files = {}
        for path in sorted(self.folder.rglob("*.json")):
            key = path.relative_to(self.folder).with_suffix("").as_posix()
            self.files[key] = json.loads(path.read_text(encoding="utf-8"))
        if not self.files:
            raise FileNotFoundError(f"no JSON Schemas under {self.folder}")
        self._validators = {}

    def validator(self, key: str):
        if key not in self._validators:
            schema = self.files[key]
            cls = jsonschema.validators.validator_for(schema)
            cls.check_schema(schema)
            self._validators[key] = cls(schema, format_checker=FORMATS)
        return self._validators[key]

    def validate(self, key: str, instance) -> None:
        """Raises jsonschema.ValidationError when `instance` is off `key`'s schema."""
        self.validator(key).validate(instance)

    def is_valid(self, key: str, instance) -> bool:
        return self.validator(key).is_valid(instance)

    def validate_event(self, aggregate_type: str, event_type: str, body, version: int = 1) -> None:
        """An event body is its variant's fields only: it is checked as the
        `oneOf` member whose single property is the event type, in the
        schema of its own event version (`events.v<N>.json`)."""
        self.validate(f"{aggregate_type}/events.v{version}", {event_type: body})

    def event_version(self, aggregate_type: str) -> int:
        """Today's event version of an aggregate type (`events.json`)."""
        return self.files[f"{aggregate_type}/events"].get(EVENT_VERSION_KEYWORD, 1)

    def command_is_valid(self, aggregate_type: str, command: str, body) -> bool:
        return self.is_valid(f"{aggregate_type}/commands", {command: body})

    def variants(self, key: str) -> list:
        """The single property of each `oneOf` member: command or event names."""
        return [next(iter(v["properties"])) for v in self.files[key]["oneOf"]]
