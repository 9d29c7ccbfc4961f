"""PROTOCOL.md, "Projectors" ("Attaching", durable read model): a
projector in Python, from the contract alone, replays the blog stream from
sequence 1 through a durable pull consumer with explicit acks, checks the
contract version of the stream and of the schemas first, validates every
body, stores the last applied sequence with its state in one write and
acknowledges after it; across a crash before the acks, redelivered events
at or below the stored position are acknowledged and not applied again,
and no event is skipped. Its read model equals the built-in `blogposts`
projection's answers."""

import json
import os

from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from support.schemas import CONTRACT_KEYWORD
from support.steps import create_post, last_seq
from support.wire import fresh

CONTRACT_VERSION = "2"
READABLE_VERSIONS = ("1", "2")


class Store:
    """The projector's durable state: the read model and the last applied
    stream sequence, written together (one file, replaced atomically)."""

    def __init__(self, path):
        self.path = path

    def load(self):
        if not self.path.exists():
            return {}, 0
        saved = json.loads(self.path.read_text())
        return saved["posts"], saved["position"]

    def save(self, posts, position):
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"posts": posts, "position": position}))
        os.replace(tmp, self.path)


def upcast(event_type, version, body):
    """A body of `version` as version 2 reads it, by the differences
    PROTOCOL.md lists for the blog post ("The reference application")."""
    if version < 2:
        if event_type == "BlogPostCreated":
            body = {**body, "author": "unknown"}
        elif event_type == "BlogPostTitleChanged":
            body = {"new_title": body["title"]}
    return body


def apply(posts, post_id, event_type, body, seq):
    """The listing `blogposts` documents: id, title, body, author,
    published, events applied, stream sequence of the last one; `body` at
    version 2."""
    if event_type == "BlogPostCreated":
        posts[post_id] = {"id": post_id, "title": body["title"], "body": body["body"],
                          "author": body["author"], "published": False, "events": 0,
                          "last_seq": 0}
    elif event_type == "BlogPostTitleChanged":
        posts[post_id]["title"] = body["new_title"]
    elif event_type == "BlogPostPublished":
        posts[post_id]["published"] = True
    posts[post_id]["events"] += 1
    posts[post_id]["last_seq"] = seq


class Projector:
    def __init__(self, w, names, schemas, store, durable):
        self.w, self.names, self.schemas, self.store = w, names, schemas, store
        self.durable = durable
        self.stream = names.stream("blogpost")
        self.applied = []  # every sequence applied, in order, across runs
        self.redelivered = []  # sequences delivered again after the crash, skipped

    async def check_versions(self):
        info = await self.w.ask(f"$JS.API.STREAM.INFO.{self.stream}")
        found = info["config"].get("metadata", {}).get("jetsource.contract")
        assert found in READABLE_VERSIONS, f"{self.stream}: contract {found!r}"
        for key in ("blogpost/events",):
            assert self.schemas.files[key][CONTRACT_KEYWORD] == CONTRACT_VERSION, key

    async def subscribe(self):
        config = ConsumerConfig(durable_name=self.durable, ack_policy=AckPolicy.EXPLICIT,
                                deliver_policy=DeliverPolicy.ALL,
                                filter_subject=self.names.stream_subjects("blogpost"),
                                ack_wait=1.0, max_deliver=-1)
        return await self.w.js.pull_subscribe(self.names.stream_subjects("blogpost"),
                                              durable=self.durable, stream=self.stream, config=config)

    async def acks_pending(self) -> int:
        return (await self.w.js.consumer_info(self.stream, self.durable)).num_ack_pending

    async def run(self, until_seq, batch=100, crash_after=None):
        """Applies events until `until_seq` is stored and nothing delivered
        waits for an ack. With `crash_after`, stops once that many batches
        are stored, without acknowledging the last one (as a crash between
        the write and the acks would)."""
        posts, position = self.store.load()
        sub = await self.subscribe()
        batches = 0
        try:
            while position < until_seq or await self.acks_pending() > 0:
                try:
                    msgs = await sub.fetch(batch, timeout=1)
                except NatsTimeout:
                    continue
                fresh_msgs = []
                for msg in msgs:
                    seq = msg.metadata.sequence.stream
                    if seq <= position:
                        # Redelivered: already in the stored state.
                        self.redelivered.append(seq)
                        await msg.ack()
                        continue
                    assert seq == position + 1 + len(fresh_msgs), (
                        f"gap: {seq} after {position + len(fresh_msgs)}")
                    event_type = msg.subject.rsplit(".", 1)[1]
                    post_id = self.names.unprefixed(msg.subject).split(".")[2]
                    body = json.loads(msg.data)
                    version = int((msg.headers or {}).get("Event-Version", 1))
                    assert version <= 2, f"#{seq}: version {version} is newer than this reader"
                    self.schemas.validate_event("blogpost", event_type, body, version)
                    apply(posts, post_id, event_type, upcast(event_type, version, body), seq)
                    fresh_msgs.append(msg)
                    self.applied.append(seq)
                if not fresh_msgs:
                    continue
                position = fresh_msgs[-1].metadata.sequence.stream
                self.store.save(posts, position)
                batches += 1
                if crash_after is not None and batches >= crash_after:
                    return posts, position
                for msg in fresh_msgs:
                    await msg.ack()
            return posts, position
        finally:
            await sub.unsubscribe()


async def test_a_python_durable_projector_replays_from_sequence_1_without_gap_or_repeat(
        deployment, names, schemas, tmp_path):
    async with deployment.connect() as w:
        ours = []
        for n in range(6):
            reply = await create_post(w, title=f"Post {n}", publish=(n % 3 == 0))
            post_id = reply["aggregate_id"]
            if n % 2 == 0:
                reply = await w.command("blogpost", post_id, "change_title", {"title": f"Post {n}, again"})
            ours.append(post_id)
        head = await w.last_seq("blogpost")
        assert head >= last_seq(reply)

        durable = fresh("conformance").replace("-", "_")
        projector = Projector(w, names, schemas, Store(tmp_path / "blog.json"), durable)
        await projector.check_versions()
        try:
            _, crashed_at = await projector.run(head, batch=min(500, max(1, head // 3)),
                                                crash_after=1)
            posts, position = await projector.run(head, batch=500)
        finally:
            await w.js.delete_consumer(names.stream("blogpost"), durable)

        # From 1, every event of the stream once, in order; what the crash
        # left unacknowledged came again and was not applied twice.
        assert projector.applied == list(range(1, position + 1))
        assert position >= head
        assert projector.redelivered and set(projector.redelivered) <= set(range(1, crashed_at + 1))

        for post_id in ours:
            answer = await w.query(f"blogposts.get.{post_id}", after_seq=str(head))
            assert answer["status"] == "ok", answer
            assert posts[post_id] == answer["result"], post_id
