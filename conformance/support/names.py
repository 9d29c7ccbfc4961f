"""Every name of the contract under a subject prefix, as PROTOCOL.md's
"Subject prefix" table derives them: subjects get `<prefix>.` in front,
event streams `<prefix, lower case, _ for .>_`, key-value buckets
`<prefix, upper case, _ for .>_`. Without a prefix every name is the
unprefixed form."""

import re

# A prefix's first tokens may not be one of jetsource's own.
RESERVED_TOKENS = (
    "cmd", "evt", "notice", "errors", "status", "feedback", "query", "projector", "forget", "forgotten"
)

_PREFIX_TOKEN = re.compile(r"[a-z0-9-]+")


class InvalidPrefix(ValueError):
    """A subject prefix that breaks PROTOCOL.md's rules."""


def check_prefix(prefix: str) -> str:
    """`prefix` when PROTOCOL.md allows it ("" is no prefix); else InvalidPrefix."""
    if prefix == "":
        return prefix
    if len(prefix) > 64:
        raise InvalidPrefix(f"{prefix!r} is longer than 64 characters")
    for token in prefix.split("."):
        if not _PREFIX_TOKEN.fullmatch(token):
            raise InvalidPrefix(f"{prefix!r}: token {token!r} is not of [a-z0-9-]+")
        if token in RESERVED_TOKENS:
            raise InvalidPrefix(f"{prefix!r}: token {token!r} is reserved")
    return prefix


class Names:
    """The names of one application: its subjects, streams and buckets."""

    def __init__(self, prefix: str = ""):
        self.prefix = check_prefix(prefix)

    def subject(self, unprefixed: str) -> str:
        """`cmd.blogpost.p1.create` as this application sends or stores it."""
        return f"{self.prefix}.{unprefixed}" if self.prefix else unprefixed

    def unprefixed(self, subject: str) -> str:
        """The inverse of `subject`."""
        if not self.prefix:
            return subject
        assert subject.startswith(self.prefix + "."), f"{subject!r} is not under {self.prefix!r}"
        return subject[len(self.prefix) + 1 :]

    def stream(self, aggregate_type: str) -> str:
        """The event stream of an aggregate type: `EVT_BLOGPOST`, `acme_shop_EVT_BLOGPOST`."""
        name = "EVT_" + aggregate_type.upper()
        return f"{self.prefix.replace('.', '_')}_{name}" if self.prefix else name

    def bucket(self, unprefixed: str) -> str:
        """A key-value bucket: `jetsource_command_index`, `ACME_SHOP_jetsource_command_index`."""
        if not self.prefix:
            return unprefixed
        return f"{self.prefix.upper().replace('.', '_')}_{unprefixed}"

    # The subjects jetsource serves, by PROTOCOL.md's sections.

    def command(self, aggregate_type: str, aggregate_id: str, command: str) -> str:
        return self.subject(f"cmd.{aggregate_type}.{aggregate_id}.{command}")

    def event(self, aggregate_type: str, aggregate_id: str, event_type: str) -> str:
        return self.subject(f"evt.{aggregate_type}.{aggregate_id}.{event_type}")

    def events_of(self, aggregate_type: str, aggregate_id: str) -> str:
        """One aggregate's events: `evt.<type>.<id>.*`."""
        return self.subject(f"evt.{aggregate_type}.{aggregate_id}.*")

    def stream_subjects(self, aggregate_type: str) -> str:
        return self.subject(f"evt.{aggregate_type}.>")

    def notice(self, aggregate_type: str, aggregate_id: str) -> str:
        return self.subject(f"notice.rejected.{aggregate_type}.{aggregate_id}")

    def status(self, command_id: str) -> str:
        return self.subject(f"status.{command_id}")

    def errors_get(self, command_id: str) -> str:
        return self.subject(f"errors.get.{command_id}")

    def errors_list(self, aggregate_type: str, aggregate_id: str) -> str:
        return self.subject(f"errors.list.{aggregate_type}.{aggregate_id}")

    def query(self, path: str) -> str:
        """`query.<projection>.<path…>`, `path` without the `query.`."""
        return self.subject(f"query.{path}")
