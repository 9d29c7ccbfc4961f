"""Steps several tests take with the reference aggregates (`blogpost`,
`account`; their commands are in schemas/json/<type>/commands.json)."""

from .wire import Wire, eventually, fresh


def post(title: str = "Hello", body: str = "Text", publish=None, author=None) -> dict:
    fields = {"title": title, "body": body}
    if publish is not None:
        fields["publish"] = publish
    if author is not None:
        fields["author"] = author
    return fields


async def create_post(wire: Wire, post_id: str = None, headers=None, **fields) -> dict:
    """Creates a fresh post; returns the accepted reply."""
    post_id = post_id or fresh("post")
    reply = await wire.command("blogpost", post_id, "create", post(**fields), headers)
    assert reply["status"] == "accepted", reply
    return reply


async def open_account(wire: Wire, account_id: str = None, headers=None) -> dict:
    account_id = account_id or fresh("acct")
    reply = await wire.command("account", account_id, "open", {"owner": "Ada"}, headers)
    assert reply["status"] == "accepted", reply
    return reply


def last_seq(reply: dict) -> int:
    """The stream sequence of a reply's last event: the aggregate's version."""
    return reply["events"][-1]["seq"]


async def assert_nothing_written(wire: Wire, aggregate_id: str) -> None:
    """No event of any reference aggregate type carries `aggregate_id`:
    with fresh ids, a rejected command left no trace in any stream."""
    for aggregate_type in ("blogpost", "account"):
        events = await wire.events_of(aggregate_type, aggregate_id)
        assert events == [], f"{aggregate_type} {aggregate_id}: {[e.subject for e in events]}"


def assert_rejected(reply: dict, code: str) -> None:
    assert reply["status"] == "rejected", reply
    assert reply["code"] == code, reply
    assert isinstance(reply["reason"], str) and reply["reason"], reply


async def stream_heads(wire: Wire) -> dict:
    """Each reference stream's last sequence, to look at what comes after."""
    return {t: await wire.last_seq(t) for t in ("blogpost", "account")}


async def assert_no_event_of_command(wire: Wire, command_id: str, heads: dict) -> None:
    """No event stored after `heads` carries `command_id`: the command
    wrote nothing (other writers of a live deployment may have)."""
    for aggregate_type, head in heads.items():
        last = await wire.last_seq(aggregate_type)
        for seq in range(head + 1, last + 1):
            event = await wire.event_at(aggregate_type, seq)
            assert event.headers.get("Command-Id") != command_id, (
                f"{event.subject} at {seq} was written by {command_id}")


async def index_has_read(wire: Wire, aggregate_type: str, seq: int) -> None:
    """Waits until the command index's durable consumer on the type's
    stream (`jetsource-command-index`, PROTOCOL.md "Command index") has
    acknowledged every event up to `seq`."""
    stream = wire.names.stream(aggregate_type)

    async def read():
        info = await wire.js.consumer_info(stream, "jetsource-command-index")
        return info.ack_floor is not None and info.ack_floor.stream_seq >= seq

    # Events a stopped process took but never acknowledged come back after
    # the consumer's ack_wait (30 s): the bound allows for one.
    await eventually(read, f"the command index read {stream} up to {seq}", within=45)
