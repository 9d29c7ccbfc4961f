"""PROTOCOL.md, "Answers too large, answers not sent" and "Pages": on a
deployment whose nats-server allows small messages, a list is read page by
page with every page fitting, and an answer larger than a message is the
small `too_large` reply, never silence. The suite starts that deployment
itself (its own nats-server with `max_payload` set), so managed mode only."""

import json

import pytest

from support.deployment import Deployment
from support.managed import Managed
from support.names import Names
from support.wire import fresh

pytestmark = pytest.mark.managed("starts a deployment with a small max_payload")

MAX_PAYLOAD = 16 * 1024


@pytest.fixture(scope="module")
def small(request, deployment):
    config = request.config
    managed = Managed(config.getoption("--jetsource-bin"), config.getoption("--nats-server-bin"),
                      config.getoption("--subject-prefix"), max_payload=MAX_PAYLOAD)
    try:
        managed.start()
    except Exception:
        managed.close(keep=True)
        raise
    yield Deployment(managed.url, Names(config.getoption("--subject-prefix")),
                     deployment.schemas, managed)
    managed.close(keep=request.session.testsfailed > 0)


async def test_the_list_is_read_in_pages_that_each_fit(small):
    async with small.connect() as w:
        assert w.nc.max_payload == MAX_PAYLOAD
        stem = fresh("sized")
        ids = [f"{stem}-{i:02}" for i in range(40)]
        for post_id in ids:
            reply = await w.command("blogpost", post_id, "create",
                                    {"title": "T", "body": "b" * 1000})
            assert reply["status"] == "accepted", reply
        after_seq = str(reply["events"][-1]["seq"])
        items, sizes = await w.list_all("blogposts.list", after_seq=after_seq, limit=1000)
        listed = [p["id"] for p in items]
        assert [p for p in listed if p.startswith(stem)] == ids
        assert len(listed) == len(set(listed))
        assert len(sizes) > 1, "40 posts of 1 KB do not fit in one 16 KiB answer"


async def test_an_answer_larger_than_a_message_is_too_large(small):
    async with small.connect() as w:
        # One command id accepted on many posts: its status names them all.
        command_id = fresh("shared")
        for i in range(150):
            reply = await w.command("blogpost", fresh(f"p{i}"), "create",
                                    {"title": "T", "body": "b"},
                                    headers={"Command-Id": command_id})
            assert reply["status"] == "accepted", reply
        msg = await w.request(w.names.status(command_id))
        assert len(msg.data) < 1024
        answer = json.loads(msg.data)
        small.schemas.validate("unsent", answer)
        assert answer["status"] == "too_large", answer
        assert answer["max_payload"] == MAX_PAYLOAD
        assert answer["size"] > MAX_PAYLOAD
        assert answer["reason"]
