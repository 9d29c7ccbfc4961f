"""The blog listing, built by a projector in Python from the jetsource contract.

It codes against the published contract, not against Rust:

- it loads the blog post event schemas of every event version it knows
  from schemas/json/blogpost/events.v<N>.json (written by `jetsource
  schema`), validates every event body against the schema of its own
  version (its `Event-Version` header, 1 when absent) and event type, then
  reads an older body as today's by the differences PROTOCOL.md lists
  (version 1 to 2: `BlogPostCreated` gains `author` = "unknown",
  `BlogPostTitleChanged`'s `title` is renamed `new_title`); an event of a
  version newer than it knows stops it, never misread;
- it checks that the schema files name the contract version it was written
  for, CONTRACT below, and that the blog post stream (its
  `jetsource.contract` metadata) names a version whose events it can read,
  READABLE below;
- under a subject prefix it reads that application's stream and subjects,
  named as PROTOCOL.md ("Subject prefix") says: prefix `acme.shop` gives the
  stream acme_shop_EVT_BLOGPOST and the subjects acme.shop.evt.blogpost.>;
- a field holding a sealed personal value (PROTOCOL.md, "Personal data")
  is shown as the value's `redacted`: this listing has no data keys, so it
  shows no personal data, and never mistakes ciphertext for a name.

Then it attaches an ordered consumer to the stream from its first event,
folds every blog post event up to the stream's last sequence (read before
attaching, so the listing is complete as of that moment), and prints the same
listing as `query.blogposts.list`, all of it as one page:

    {"items": [{"id", "title", "body", "author", "published", "events", "last_seq"}, ...],
     "next": null}

ordered by id.

Usage: python3 blog_listing.py [NATS_URL] [--schemas DIR] [--subject-prefix P]
  NATS_URL  default: $NATS_URL, else nats://127.0.0.1:4222
  DIR       the JSON Schemas folder; default: schemas/json of this repository
  P         the application's subject prefix; default: $JETSOURCE_SUBJECT_PREFIX,
            else none ("" is none). The same setting as jetsource's
            --subject-prefix, with the same precedence: flag, then environment.
Needs nats-py and jsonschema: pip install -r requirements.txt (beside this file).

A projector must never skip an event silently. When the contract does not
hold it prints one JSON object on stderr, prints no listing, and exits with
status 1:

    {"error": "invalid_prefix", "source": "--subject-prefix", "prefix": ..., "reason": ...}
    {"error": "bad_schemas", "source": ..., "reason": ...}
    {"error": "contract_mismatch", "source": ..., "found": ..., "expected": "2", "reason": ...}
    {"error": "invalid_event", "stream": "EVT_BLOGPOST", "seq": 13, "subject": ..., "reason": ...}

`invalid_prefix`: the subject prefix (from `source`: the flag or
JETSOURCE_SUBJECT_PREFIX) breaks the rules jetsource checks it by (one or
more dot-separated tokens of a-z, 0-9 and '-', at most 64 characters, no token
one of jetsource's first subject tokens); nothing is read.
`bad_schemas`: an events schema file is missing or not a JSON Schema.
`contract_mismatch`: the schema file or the stream names another contract
version, or none (jetsource stamps each stream it sets up, so a stream without
the key has not been set up by jetsource yet). `invalid_event`: the event at
stream sequence `seq` has an unknown type or a version newer than it reads, or
its body is not JSON or does not match its version's schema. Other failures (NATS unreachable, no stream) end with a
Python traceback and status 1.
"""

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

import jsonschema
import nats

# The contract version this projector was written for.
CONTRACT = "2"
# The versions whose streams it reads: version 1 events carry two headers
# version 2 dropped (Nats-Msg-Id, Event-Time) and nothing it lacks.
READABLE = ("1", CONTRACT)
# Where jetsource puts the contract version: stream metadata, schema keyword.
CONTRACT_METADATA_KEY = "jetsource.contract"
CONTRACT_KEYWORD = "x-jetsource-contract"

AGGREGATE_TYPE = "blogpost"
# The event versions it reads: the latest is the shape it folds.
EVENT_VERSIONS = (1, 2)
EVENT_VERSION_HEADER = "Event-Version"
DEFAULT_SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "json"


class ProjectionError(Exception):
    """A failure reported as one JSON object: `error` is its kind."""

    def __init__(self, error, **details):
        super().__init__(details.get("reason", error))
        self.report = {"error": error, **details}


# The subject prefix rules of jetsource (schemas/src/namespace.rs): checked
# here too, so that a bad prefix is named instead of reading nothing.
PREFIX_ENV = "JETSOURCE_SUBJECT_PREFIX"
MAX_PREFIX_LEN = 64
PREFIX_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
RESERVED_TOKENS = (
    "cmd", "evt", "notice", "errors", "status", "feedback", "query", "projector", "forget", "forgotten"
)


class Names:
    """The stream and subjects of the blog posts under a subject prefix.

    Without one: EVT_BLOGPOST, evt.blogpost.>. Under `acme.shop`: the prefix
    with `_` for `.`, then `_EVT_BLOGPOST` (acme_shop_EVT_BLOGPOST), and
    every subject behind `acme.shop.`.
    """

    def __init__(self, prefix):
        self.prefix = prefix
        self.head = f"{prefix}." if prefix else ""
        stream_prefix = f"{prefix.replace('.', '_')}_EVT_" if prefix else "EVT_"
        self.stream = stream_prefix + AGGREGATE_TYPE.upper()
        self.subjects = f"{self.head}evt.{AGGREGATE_TYPE}.>"


def prefix_problem(prefix):
    """Why `prefix` is not a valid subject prefix, or None ("" is none)."""
    if prefix == "":
        return None
    size = len(prefix.encode())
    if size > MAX_PREFIX_LEN:
        return f"the subject prefix is {size} bytes long, more than {MAX_PREFIX_LEN}"
    at = 0
    for token in prefix.split("."):
        if token == "":
            return (
                "the subject prefix has an empty token (a leading, trailing or doubled '.') "
                f"at byte {at}"
            )
        for i, c in enumerate(token):
            if c not in PREFIX_CHARS:
                offset = at + len(token[:i].encode())
                return (
                    "the subject prefix may only contain a-z, 0-9 and '-' in dot-separated "
                    f"tokens (lower case, no '_': found {c!r} at byte {offset})"
                )
        if token in RESERVED_TOKENS:
            return (
                f"the subject prefix may not contain the token {token!r}: "
                "jetsource's subjects start with it"
            )
        at += len(token.encode()) + 1
    return None


def configured_names(flag):
    """The names under the prefix of the flag, else of PREFIX_ENV."""
    if flag is not None:
        source, prefix = "--subject-prefix", flag
    else:
        source, prefix = PREFIX_ENV, os.environ.get(PREFIX_ENV, "")
    problem = prefix_problem(prefix)
    if problem is not None:
        raise ProjectionError("invalid_prefix", source=source, prefix=prefix, reason=problem)
    return Names(prefix)


def check_contract(source, found, readable=(CONTRACT,)):
    if found not in readable:
        named = "no contract version" if found is None else f"contract version {found!r}"
        raise ProjectionError(
            "contract_mismatch",
            source=source,
            found=found,
            expected=CONTRACT,
            reason=f"{source} names {named}; this projector was written for {CONTRACT!r}",
        )


def event_validators(schemas_dir):
    """Per event version, one validator per event type, from
    <dir>/blogpost/events.v<N>.json.

    Each file is the event enum of one version: `oneOf` one object per event
    type, whose only property is the event type and holds the schema of the
    body (the body on the wire is just the fields; the type is the subject's
    last token).
    """
    validators = {}
    for version in EVENT_VERSIONS:
        path = Path(schemas_dir) / AGGREGATE_TYPE / f"events.v{version}.json"
        try:
            schema = json.loads(path.read_text())
            jsonschema.Draft202012Validator.check_schema(schema)
        except (OSError, ValueError, jsonschema.SchemaError) as e:
            raise ProjectionError("bad_schemas", source=str(path), reason=str(e)) from e
        check_contract(str(path), schema.get(CONTRACT_KEYWORD))
        of_version = validators[version] = {}
        for variant in schema["oneOf"]:
            for event_type, body_schema in variant.get("properties", {}).items():
                body_schema = dict(body_schema)
                # References inside point at the file's $defs: keep them resolvable.
                if "$defs" in schema:
                    body_schema["$defs"] = schema["$defs"]
                of_version[event_type] = jsonschema.Draft202012Validator(body_schema)
    return validators


def upcast(event_type, version, fields):
    """An event of `version` as the latest version reads it, one version at
    a time, by the differences PROTOCOL.md lists for the blog post."""
    if version < 2:
        if event_type == "BlogPostCreated":
            fields = {**fields, "author": fields.get("author", "unknown")}
        elif event_type == "BlogPostTitleChanged" and "title" in fields:
            fields = dict(fields)
            fields["new_title"] = fields.pop("title")
    return event_type, fields


SEALED = "$sealed"
SEALED_SCHEME = "xchacha20poly1305-v1"


def unsealed(fields, invalid):
    """The fields with each sealed personal value (PROTOCOL.md, "Personal
    data") read as its redaction value: this listing holds no data keys, so
    it never shows personal data, and never takes ciphertext for it."""
    if not isinstance(fields, dict):
        return fields
    read = dict(fields)
    for name, value in fields.items():
        if isinstance(value, dict) and SEALED in value:
            if value[SEALED] != SEALED_SCHEME or "redacted" not in value:
                raise invalid(f"field {name} is sealed with an unknown scheme")
            read[name] = value["redacted"]
    return read


def apply(posts, validators, names, subject, seq, body, version=1):
    def invalid(reason):
        return ProjectionError(
            "invalid_event", stream=names.stream, seq=seq, subject=subject, reason=reason
        )

    # <prefix>.evt.<aggregate_type>.<aggregate_id>.<EventType>; the body
    # holds the event's fields as JSON.
    tokens = subject[len(names.head) :].split(".") if subject.startswith(names.head) else []
    if len(tokens) != 4:
        raise invalid(f"not an event subject {names.head}evt.<type>.<id>.<EventType>")
    _, _, post_id, event_type = tokens
    if version not in validators:
        raise invalid(
            f"event version {version} is not one this listing reads ({list(validators)}): "
            "upgrade it before reading newer events"
        )
    validator = validators[version].get(event_type)
    if validator is None:
        raise invalid(f"unknown event type {event_type} at version {version}")
    try:
        fields = json.loads(body) if body else {}
    except ValueError as e:
        raise invalid(f"the body is not JSON: {e}") from e
    fields = unsealed(fields, invalid)
    errors = sorted(validator.iter_errors(fields), key=lambda e: list(e.path))
    if errors:
        reasons = "; ".join(
            f"{'/'.join(map(str, e.path)) or 'body'}: {e.message}" for e in errors
        )
        raise invalid(f"{event_type} does not match its version {version} schema: {reasons}")
    event_type, fields = upcast(event_type, version, fields)
    post = posts.setdefault(
        post_id,
        {"id": post_id, "title": "", "body": "", "published": False, "events": 0, "last_seq": 0},
    )
    if event_type == "BlogPostCreated":
        post["title"] = fields["title"]
        post["body"] = fields["body"]
        post["author"] = fields["author"]
    elif event_type == "BlogPostTitleChanged":
        post["title"] = fields["new_title"]
    elif event_type == "BlogPostPublished":
        post["published"] = True
    else:
        # In the schema but not handled here: never skip silently.
        raise invalid(f"event type {event_type} is not handled by this listing")
    post["events"] += 1
    post["last_seq"] = seq


def event_version(headers, names, subject, seq):
    """The body's version: its `Event-Version` header, 1 when absent."""
    value = (headers or {}).get(EVENT_VERSION_HEADER)
    if value is None:
        return 1
    try:
        version = int(value)
    except ValueError:
        version = 0
    if version < 1:
        raise ProjectionError(
            "invalid_event", stream=names.stream, seq=seq, subject=subject,
            reason=f"{EVENT_VERSION_HEADER} {value[:64]!r} is not a positive integer",
        )
    return version


async def listing(url, validators, names):
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(names.stream)
        check_contract(
            names.stream, (info.config.metadata or {}).get(CONTRACT_METADATA_KEY), READABLE
        )
        head = info.state.last_seq
        posts = {}
        if head > 0:
            sub = await js.subscribe(names.subjects, stream=names.stream, ordered_consumer=True)
            try:
                seq = 0
                while seq < head:
                    msg = await sub.next_msg(timeout=30)
                    seq = msg.metadata.sequence.stream
                    apply(posts, validators, names, msg.subject, seq, msg.data,
                          event_version(msg.headers, names, msg.subject, seq))
            finally:
                await sub.unsubscribe()
        return {"items": [posts[key] for key in sorted(posts)], "next": None}
    finally:
        await nc.close()


def main():
    parser = argparse.ArgumentParser(description="The blog listing from the blog post stream.")
    parser.add_argument(
        "url",
        nargs="?",
        default=os.environ.get("NATS_URL", "nats://127.0.0.1:4222"),
        help="the NATS URL (default: $NATS_URL, else nats://127.0.0.1:4222)",
    )
    parser.add_argument(
        "--schemas",
        default=DEFAULT_SCHEMAS,
        help=f"the JSON Schemas folder (default: {DEFAULT_SCHEMAS})",
    )
    parser.add_argument(
        "--subject-prefix",
        default=None,
        help=f"the application's subject prefix (default: ${PREFIX_ENV}, else none)",
    )
    args = parser.parse_args()
    try:
        namespace = configured_names(args.subject_prefix)
        validators = event_validators(args.schemas)
        print(json.dumps(asyncio.run(listing(args.url, validators, namespace))))
    except ProjectionError as e:
        print(json.dumps(e.report), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
