"""A NATS client that speaks the contract with nats-py: commands and their
replies, feedback and projection queries, and stored events read back by
JetStream direct get. Every wait is bounded, so a missing answer fails a
test instead of hanging it."""

import asyncio
import base64
import json
import uuid
from dataclasses import dataclass, field
from typing import Optional

import nats
from nats.errors import NoRespondersError, TimeoutError as NatsTimeout
from nats.protocol import command as protocol

from .names import Names

# How long a test waits for one answer. Commands and queries answer at once
# or within `[projectors] query_wait` (5 s by default).
ANSWER_WAIT = 10.0

# How long a test waits for an answer the contract says comes at once
# (a bad_request) before it calls the lack of one silence.
SILENCE = 2.0


def fresh(kind: str) -> str:
    """A token no earlier run used: `<kind>-<hex>`."""
    return f"{kind}-{uuid.uuid4().hex[:16]}"


class NoAnswer(AssertionError):
    """A request got no answer: nobody subscribed (`no_responders`), or the
    answer did not come in time (`timeout`)."""

    def __init__(self, subject: str, why: str):
        super().__init__(f"no answer on {subject[:120]!r}: {why}")
        self.subject = subject
        self.why = why


SEALED_SCHEME = "xchacha20poly1305-v1"


def is_sealed(value) -> bool:
    """Whether `value` is a sealed value: an object with `$sealed`."""
    return isinstance(value, dict) and "$sealed" in value


def read_sealed(value):
    """A sealed value's `redacted` after checking it has the documented
    shape; any other value as it is."""
    if not is_sealed(value):
        return value
    assert value["$sealed"] == SEALED_SCHEME, value
    assert set(value) == {"$sealed", "kid", "nonce", "data", "redacted"}, value
    assert len(value["kid"]) == 16 and all(c in "0123456789abcdef" for c in value["kid"]), value
    assert len(base64.b64decode(value["nonce"], validate=True)) == 24, value
    # The plain value's JSON and a 16-byte tag.
    assert len(base64.b64decode(value["data"], validate=True)) > 16, value
    return value["redacted"]


@dataclass
class StoredEvent:
    """One message of an event stream, as a direct get returns it."""

    stream: str
    seq: int
    subject: str
    headers: dict
    data: bytes
    time: str

    @property
    def body(self):
        return json.loads(self.data)

    @property
    def redacted(self):
        """The body as a reader without data keys reads it: each sealed
        personal value (PROTOCOL.md, "Personal data") checked for its shape
        and replaced by its `redacted` value."""
        return {k: read_sealed(v) for k, v in self.body.items()}

    @property
    def event_type(self) -> str:
        return self.subject.rsplit(".", 1)[1]

    @property
    def version(self) -> int:
        """The body's schema version: `Event-Version`, 1 when absent."""
        return int(self.headers.get("Event-Version", 1))


@dataclass
class Wire:
    """One connection to the deployment, with its application's names."""

    nc: nats.NATS
    names: Names
    js: object = field(init=False)

    def __post_init__(self):
        self.js = self.nc.jetstream()

    # Requests.

    async def request(self, subject: str, payload: bytes = b"", headers: Optional[dict] = None,
                      timeout: float = ANSWER_WAIT):
        """The answer's message; NoAnswer when there is none."""
        try:
            return await self.nc.request(subject, payload, timeout=timeout, headers=headers)
        except NoRespondersError:
            raise NoAnswer(subject, "no_responders") from None
        except (NatsTimeout, asyncio.TimeoutError):
            raise NoAnswer(subject, "timeout") from None

    async def ask(self, subject: str, payload: bytes = b"", headers: Optional[dict] = None,
                  timeout: float = ANSWER_WAIT) -> dict:
        """The answer, decoded from JSON."""
        msg = await self.request(subject, payload, headers, timeout)
        return json.loads(msg.data)

    async def command(self, aggregate_type: str, aggregate_id: str, command: str, body=None,
                      headers: Optional[dict] = None, timeout: float = ANSWER_WAIT) -> dict:
        """Sends a command as a request and returns its reply. `body` is a
        dict (sent as JSON), bytes (sent as they are) or None (empty)."""
        return await self.ask(self.names.command(aggregate_type, aggregate_id, command),
                              encode(body), headers, timeout)

    async def publish(self, subject: str, payload: bytes = b"", headers: Optional[dict] = None):
        """Fire-and-forget: no reply subject."""
        await self.nc.publish(subject, payload, headers=headers)
        await self.nc.flush()

    async def request_raw(self, subject: str, header_lines: bytes, payload: bytes = b"",
                          timeout: float = ANSWER_WAIT) -> dict:
        """A request whose header block is sent byte for byte (after the
        `NATS/1.0` line): what nats-py's `headers` dict cannot express,
        such as one name twice or a bare CR. Uses nats-py's protocol
        writer, pinned with the client."""
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox, max_msgs=1)
        try:
            block = b"NATS/1.0\r\n" + header_lines + b"\r\n"
            await self.nc._send_command(protocol.hpub_cmd(subject, inbox, block, payload))
            await self.nc.flush()
            try:
                msg = await sub.next_msg(timeout=timeout)
            except (NatsTimeout, asyncio.TimeoutError):
                raise NoAnswer(subject, "timeout") from None
            if not msg.data and msg.headers and msg.headers.get("Status") == "503":
                raise NoAnswer(subject, "no_responders")
            return json.loads(msg.data)
        finally:
            await sub.unsubscribe()

    # Feedback.

    async def status(self, command_id: str, timeout: float = ANSWER_WAIT) -> dict:
        return await self.ask(self.names.status(command_id), timeout=timeout)

    async def errors_get(self, command_id: str) -> dict:
        return await self.ask(self.names.errors_get(command_id))

    async def errors_list(self, aggregate_type: str, aggregate_id: str,
                          timeout: float = ANSWER_WAIT) -> dict:
        return await self.ask(self.names.errors_list(aggregate_type, aggregate_id), timeout=timeout)

    # Projections.

    async def query(self, path: str, after_seq: Optional[str] = None,
                    timeout: float = ANSWER_WAIT, body=None) -> dict:
        """A projection's answer; `body` as for `command` (a page request
        of a list, say)."""
        headers = None if after_seq is None else {"After-Seq": after_seq}
        return await self.ask(self.names.query(path), encode(body), headers=headers,
                              timeout=timeout)

    async def list_all(self, path: str, after_seq: Optional[str] = None,
                       limit: Optional[int] = None) -> tuple:
        """Every item of a paginated list, page after page (the first with
        `After-Seq`), and the size of each page."""
        items, sizes, after = [], [], None
        while True:
            body = {k: v for k, v in (("limit", limit), ("after", after)) if v is not None}
            answer = await self.query(path, after_seq=after_seq if not sizes else None,
                                      body=body)
            assert answer["status"] == "ok", answer
            assert set(answer["result"]) == {"items", "next"}, answer
            items += answer["result"]["items"]
            sizes.append(len(answer["result"]["items"]))
            after = answer["result"]["next"]
            if after is None:
                return items, sizes
            assert isinstance(after, str) and after, answer

    # Streams.

    async def stream_info(self, aggregate_type: str):
        return await self.js.stream_info(self.names.stream(aggregate_type))

    async def last_seq(self, aggregate_type: str) -> int:
        return (await self.stream_info(aggregate_type)).state.last_seq

    async def direct_get(self, stream: str, request: dict) -> Optional[StoredEvent]:
        """One message by ADR-31 direct get, or None when there is none."""
        msg = await self.request(f"$JS.API.DIRECT.GET.{stream}", json.dumps(request).encode())
        headers = dict(msg.headers or {})
        if headers.get("Status") == "404":
            return None
        assert "Status" not in headers, f"direct get on {stream}: {headers}"
        return StoredEvent(stream=headers.pop("Nats-Stream"), seq=int(headers.pop("Nats-Sequence")),
                           subject=headers.pop("Nats-Subject"),
                           time=headers.pop("Nats-Time-Stamp"), headers=headers, data=msg.data)

    async def event_at(self, aggregate_type: str, seq: int) -> StoredEvent:
        stream = self.names.stream(aggregate_type)
        event = await self.direct_get(stream, {"seq": seq})
        assert event is not None, f"no message at {stream} {seq}"
        return event

    async def events_of(self, aggregate_type: str, aggregate_id: str) -> list:
        """Every stored event of one aggregate, in stream order."""
        stream = self.names.stream(aggregate_type)
        subject = self.names.events_of(aggregate_type, aggregate_id)
        events, seq = [], 1
        while True:
            event = await self.direct_get(stream, {"seq": seq, "next_by_subj": subject})
            if event is None:
                return events
            events.append(event)
            seq = event.seq + 1


def encode(body) -> bytes:
    if body is None:
        return b""
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    return json.dumps(body).encode()


async def eventually(check, what: str, within: float = 10.0, every: float = 0.05):
    """Calls the coroutine function `check` until it returns something
    truthy, and returns that; fails after `within` seconds. For what the
    contract says arrives later (notices, the command index), never to
    judge how fast."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last = None
    while True:
        last = await check()
        if last:
            return last
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not within {within} s (last: {last!r})")
        await asyncio.sleep(every)
