"""The blog listing, built by a projector in Python from the jetsource contract.

It codes against the published contract, not against Rust:

- it loads the blog post event schemas from schemas/json/blogpost/events.json
  (written by `jetsource schema`) and validates every event body it folds
  against the schema of its event type;
- it checks that the schema files and the stream EVT_BLOGPOST (its
  `jetsource.contract` metadata) name the contract version it was written
  for, CONTRACT below.

Then it attaches an ordered consumer to EVT_BLOGPOST from its first event,
folds every blog post event up to the stream's last sequence (read before
attaching, so the listing is complete as of that moment), and prints the same
listing as `query.blogposts.list`:

    {"posts": [{"id", "title", "body", "published", "events", "last_seq"}, ...]}

ordered by id.

Usage: python3 blog_listing.py [NATS_URL] [--schemas DIR]
  NATS_URL  default: $NATS_URL, else nats://127.0.0.1:4222
  DIR       the JSON Schemas folder; default: schemas/json of this repository
Needs nats-py and jsonschema.

A projector must never skip an event silently. When the contract does not
hold it prints one JSON object on stderr, prints no listing, and exits with
status 1:

    {"error": "bad_schemas", "source": ..., "reason": ...}
    {"error": "contract_mismatch", "source": ..., "found": ..., "expected": "1", "reason": ...}
    {"error": "invalid_event", "stream": "EVT_BLOGPOST", "seq": 13, "subject": ..., "reason": ...}

`bad_schemas`: the events schema file is missing or not a JSON Schema.
`contract_mismatch`: the schema file or the stream names another contract
version, or none (jetsource stamps each stream it sets up, so a stream without
the key has not been set up by jetsource yet). `invalid_event`: the event at
stream sequence `seq` has an unknown type, or its body is not JSON or does not
match its schema. Other failures (NATS unreachable, no stream) end with a
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
CONTRACT = "1"
# Where jetsource puts the contract version: stream metadata, schema keyword.
CONTRACT_METADATA_KEY = "jetsource.contract"
CONTRACT_KEYWORD = "x-jetsource-contract"

AGGREGATE_TYPE = "blogpost"
STREAM = "EVT_BLOGPOST"
SUBJECTS = "evt.blogpost.>"
DEFAULT_SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "json"


class ProjectionError(Exception):
    """A failure reported as one JSON object: `error` is its kind."""

    def __init__(self, error, **details):
        super().__init__(details.get("reason", error))
        self.report = {"error": error, **details}


def check_contract(source, found):
    if found != CONTRACT:
        named = "no contract version" if found is None else f"contract version {found!r}"
        raise ProjectionError(
            "contract_mismatch",
            source=source,
            found=found,
            expected=CONTRACT,
            reason=f"{source} names {named}; this projector was written for {CONTRACT!r}",
        )


def event_validators(schemas_dir):
    """One validator per event type, from <dir>/blogpost/events.json.

    The file is the event enum: `oneOf` one object per event type, whose only
    property is the event type and holds the schema of the body (the body on
    the wire is just the fields; the type is the subject's last token).
    """
    path = Path(schemas_dir) / AGGREGATE_TYPE / "events.json"
    try:
        schema = json.loads(path.read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
    except (OSError, ValueError, jsonschema.SchemaError) as e:
        raise ProjectionError("bad_schemas", source=str(path), reason=str(e)) from e
    check_contract(str(path), schema.get(CONTRACT_KEYWORD))
    validators = {}
    for variant in schema["oneOf"]:
        for event_type, body_schema in variant.get("properties", {}).items():
            body_schema = dict(body_schema)
            # References inside point at the file's $defs: keep them resolvable.
            if "$defs" in schema:
                body_schema["$defs"] = schema["$defs"]
            validators[event_type] = jsonschema.Draft202012Validator(body_schema)
    return validators


def invalid(subject, seq, reason):
    return ProjectionError("invalid_event", stream=STREAM, seq=seq, subject=subject, reason=reason)


def apply(posts, validators, subject, seq, body):
    # evt.<aggregate_type>.<aggregate_id>.<EventType>; the body holds the
    # event's fields as JSON.
    tokens = subject.split(".")
    if len(tokens) != 4:
        raise invalid(subject, seq, "not an event subject evt.<type>.<id>.<EventType>")
    _, _, post_id, event_type = tokens
    validator = validators.get(event_type)
    if validator is None:
        raise invalid(subject, seq, f"unknown event type {event_type}")
    try:
        fields = json.loads(body) if body else {}
    except ValueError as e:
        raise invalid(subject, seq, f"the body is not JSON: {e}") from e
    errors = sorted(validator.iter_errors(fields), key=lambda e: list(e.path))
    if errors:
        reasons = "; ".join(
            f"{'/'.join(map(str, e.path)) or 'body'}: {e.message}" for e in errors
        )
        raise invalid(subject, seq, f"{event_type} does not match its schema: {reasons}")
    post = posts.setdefault(
        post_id,
        {"id": post_id, "title": "", "body": "", "published": False, "events": 0, "last_seq": 0},
    )
    if event_type == "BlogPostCreated":
        post["title"] = fields["title"]
        post["body"] = fields["body"]
    elif event_type == "BlogPostTitleChanged":
        post["title"] = fields["title"]
    elif event_type == "BlogPostPublished":
        post["published"] = True
    else:
        # In the schema but not handled here: never skip silently.
        raise invalid(subject, seq, f"event type {event_type} is not handled by this listing")
    post["events"] += 1
    post["last_seq"] = seq


async def listing(url, validators):
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(STREAM)
        check_contract(STREAM, (info.config.metadata or {}).get(CONTRACT_METADATA_KEY))
        head = info.state.last_seq
        posts = {}
        if head > 0:
            sub = await js.subscribe(SUBJECTS, stream=STREAM, ordered_consumer=True)
            try:
                seq = 0
                while seq < head:
                    msg = await sub.next_msg(timeout=30)
                    seq = msg.metadata.sequence.stream
                    apply(posts, validators, msg.subject, seq, msg.data)
            finally:
                await sub.unsubscribe()
        return {"posts": [posts[key] for key in sorted(posts)]}
    finally:
        await nc.close()


def main():
    parser = argparse.ArgumentParser(description="The blog listing from EVT_BLOGPOST.")
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
    args = parser.parse_args()
    try:
        validators = event_validators(args.schemas)
        print(json.dumps(asyncio.run(listing(args.url, validators))))
    except ProjectionError as e:
        print(json.dumps(e.report), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
