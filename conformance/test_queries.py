"""PROTOCOL.md, "Queries" of projections: `query.blogposts.get.<id>` and
`query.blogposts.list`, `After-Seq` in both forms, and the `ok`,
`not_found`, `bad_request` and `timeout` answers. Malformed `After-Seq`
values are in test_bad_input.py."""

import pytest

from support.steps import create_post, last_seq
from support.wire import SILENCE, NoAnswer, fresh

POST_FIELDS = {"id", "title", "body", "author", "published", "events", "last_seq"}


async def test_get_after_the_replys_seq_answers_the_post_as_written(deployment, names):
    async with deployment.connect() as w:
        created = await create_post(w, title="Query me", body="Text", publish=True, author=" Ada ")
        post_id = created["aggregate_id"]
        changed = await w.command("blogpost", post_id, "change_title", {"title": "Queried"})
        answer = await w.query(f"blogposts.get.{post_id}", after_seq=str(last_seq(changed)))
        assert answer["status"] == "ok", answer
        assert answer["projection"] == "blogposts"
        assert answer["positions"][names.stream("blogpost")] >= last_seq(changed)
        assert answer["result"] == {"id": post_id, "title": "Queried", "body": "Text",
                                    "author": "Ada", "published": True, "events": 3,
                                    "last_seq": last_seq(changed)}


async def test_after_seq_names_streams_in_general(deployment, names):
    async with deployment.connect() as w:
        reply = await create_post(w)
        after = f"{names.stream('blogpost')}:{last_seq(reply)}"
        answer = await w.query(f"blogposts.get.{reply['aggregate_id']}", after_seq=after)
        assert answer["status"] == "ok", answer
        assert set(answer["result"]) == POST_FIELDS


async def test_after_seq_of_a_position_already_applied_answers_at_once(deployment, names):
    async with deployment.connect() as w:
        reply = await create_post(w)
        for after in ("0", "1", f"{names.stream('blogpost')}:0"):
            answer = await w.query(f"blogposts.get.{reply['aggregate_id']}", after_seq=after)
            assert answer["status"] in ("ok", "not_found"), (after, answer)


async def test_list_answers_every_post_ordered_by_id(deployment):
    async with deployment.connect() as w:
        stem = fresh("listed")
        ids = [f"{stem}-{c}" for c in "cab"]
        for post_id in ids:
            reply = await create_post(w, post_id)
        posts, _ = await w.list_all("blogposts.list", after_seq=str(last_seq(reply)))
        listed = [p["id"] for p in posts]
        assert listed == sorted(listed)
        assert [p for p in listed if p.startswith(stem)] == sorted(ids)
        for p in posts:
            assert set(p) == POST_FIELDS, p


async def test_list_is_read_page_by_page_and_visits_every_post_once(deployment):
    async with deployment.connect() as w:
        stem = fresh("paged")
        ids = [f"{stem}-{i:02}" for i in range(7)]
        for post_id in ids:
            reply = await create_post(w, post_id)
        first = await w.query("blogposts.list", after_seq=str(last_seq(reply)),
                              body={"limit": 2})
        assert first["status"] == "ok", first
        assert len(first["result"]["items"]) == 2
        assert isinstance(first["result"]["next"], str)
        posts, sizes = await w.list_all("blogposts.list", limit=3)
        listed = [p["id"] for p in posts]
        assert len(listed) == len(set(listed)), "a post on two pages"
        assert listed == sorted(listed)
        assert [p for p in listed if p.startswith(stem)] == ids
        assert all(size <= 3 for size in sizes), sizes
        # The cursor of a page starts the next one right after it.
        after = first["result"]["items"][-1]["id"]
        second = await w.query("blogposts.list", body={"limit": 1, "after": first["result"]["next"]})
        assert second["status"] == "ok", second
        assert [p["id"] for p in second["result"]["items"]] == \
            [p for p in listed if p > after][:1]


async def test_a_malformed_page_request_is_bad_request(deployment):
    async with deployment.connect() as w:
        for body in ({"limit": 0}, {"lmit": 2}, [1], b"not json", {"after": ""}):
            answer = await w.query("blogposts.list", body=body)
            assert answer["status"] == "bad_request", (body, answer)
            assert answer["reason"]


async def test_an_unknown_post_is_not_found(deployment):
    async with deployment.connect() as w:
        answer = await w.query(f"blogposts.get.{fresh('nobody')}")
        assert answer["status"] == "not_found", answer
        assert answer["reason"]


async def test_an_unknown_query_or_an_invalid_id_is_bad_request(deployment):
    async with deployment.connect() as w:
        for path in ("blogposts.archive", "blogposts.get", "blogposts.list.more",
                     "blogposts.get.a*b", "blogposts.get.bäd", "blogposts.get." + "x" * 129):
            answer = await w.query(path)
            assert answer["status"] == "bad_request", (path, answer)
            assert answer["reason"]


async def test_a_query_of_a_projection_no_process_runs_has_no_responders(deployment):
    # PROTOCOL.md, Queries: each process answers its own projections only.
    async with deployment.connect() as w:
        with pytest.raises(NoAnswer) as nobody:
            await w.query(f"{fresh('nope').replace('-', '')}.list", timeout=SILENCE)
        assert nobody.value.why == "no_responders"


async def test_a_position_not_reached_within_query_wait_is_timeout(deployment, names):
    async with deployment.connect() as w:
        head = await w.last_seq("blogpost")
        answer = await w.query("blogposts.list", after_seq=str(head + 1_000_000), timeout=30)
        assert answer["status"] == "timeout", answer
        assert answer["reason"]
        assert answer["after_seq"] == {names.stream("blogpost"): head + 1_000_000}
        assert answer["positions"][names.stream("blogpost")] >= head
