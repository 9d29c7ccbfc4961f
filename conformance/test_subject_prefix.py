"""PROTOCOL.md, "Subject prefix": every name of the table, under the
deployment's prefix (`--subject-prefix`) or without one: commands, events,
notices, feedback and projection queries and projector status on
`<prefix>.…`; event streams `<prefix lower, _ for .>_EVT_<TYPE>`; buckets
`<PREFIX upper, _ for .>_<bucket>`; stream names in the contract in their
prefixed form. The other tests use the same names throughout."""

import json
import subprocess

import pytest

from support.names import InvalidPrefix, Names, check_prefix
from support.steps import create_post, index_has_read, last_seq
from support.wire import NoAnswer, eventually, fresh


def test_the_suite_derives_the_tables_names():
    plain, shop = Names(""), Names("acme.shop")
    table = [
        ("cmd.blogpost.p1.create", "acme.shop.cmd.blogpost.p1.create"),
        ("evt.blogpost.p1.BlogPostCreated", "acme.shop.evt.blogpost.p1.BlogPostCreated"),
        ("status.c1", "acme.shop.status.c1"),
        ("query.blogposts.list", "acme.shop.query.blogposts.list"),
        ("projector.blogposts.rebuild", "acme.shop.projector.blogposts.rebuild"),
    ]
    for unprefixed, prefixed in table:
        assert (plain.subject(unprefixed), shop.subject(unprefixed)) == (unprefixed, prefixed)
    assert (plain.stream("blogpost"), shop.stream("blogpost")) == ("EVT_BLOGPOST", "acme_shop_EVT_BLOGPOST")
    for bucket in ("jetsource_command_index", "jetsource_projectors", "projection_blogposts_g2"):
        assert plain.bucket(bucket) == bucket
        assert shop.bucket(bucket) == "ACME_SHOP_" + bucket


@pytest.mark.parametrize("prefix", ["Acme", "acme..shop", "acme_shop", "acme.cmd", "evt", "x" * 65, ".acme",
                                    "acme.", "acme shop", "query.x"])
def test_the_suite_refuses_a_prefix_the_rules_forbid(prefix):
    with pytest.raises(InvalidPrefix):
        check_prefix(prefix)


async def test_commands_and_their_replies_use_the_prefixed_names(deployment, names):
    async with deployment.connect() as w:
        post_id = fresh("post")
        msg = await w.request(names.subject(f"cmd.blogpost.{post_id}.create"),
                              b'{"title":"Prefixed","body":"Text"}')
        reply = json.loads(msg.data)
        assert reply["status"] == "accepted", reply
        # The reply names the stream in its prefixed form.
        assert reply["events"][0]["stream"] == names.stream("blogpost")


async def test_events_are_stored_on_prefixed_subjects_in_the_prefixed_stream(deployment, names):
    async with deployment.connect() as w:
        reply = await create_post(w)
        event = await w.event_at("blogpost", last_seq(reply))
        assert event.stream == names.stream("blogpost")
        assert event.subject == names.subject(f"evt.blogpost.{reply['aggregate_id']}.BlogPostCreated")
        info = await w.stream_info("blogpost")
        assert info.config.subjects == [names.subject("evt.blogpost.>")]


async def test_notices_and_feedback_queries_are_prefixed(deployment, names):
    async with deployment.connect() as w:
        post_id, command_id = fresh("post"), fresh("cmd")
        sub = await w.nc.subscribe(names.subject(f"notice.rejected.blogpost.{post_id}"))
        await w.nc.flush()
        await w.command("blogpost", post_id, "publish", {}, {"Command-Id": command_id})
        notice = json.loads((await sub.next_msg(timeout=10)).data)
        await sub.unsubscribe()
        assert notice["command_id"] == command_id

        async def rejected():
            answer = await w.ask(names.subject(f"errors.get.{command_id}"))
            return answer["status"] == "rejected"

        await eventually(rejected, "errors.get under the prefix")
        listed = await w.ask(names.subject(f"errors.list.blogpost.{post_id}"))
        assert [r["command_id"] for r in listed["rejections"]] == [command_id]
        status = await w.ask(names.subject(f"status.{command_id}"))
        assert status["status"] == "rejected"


async def test_projection_queries_and_after_seq_use_prefixed_names(deployment, names):
    async with deployment.connect() as w:
        reply = await create_post(w)
        stream = names.stream("blogpost")
        answer = await w.ask(names.subject(f"query.blogposts.get.{reply['aggregate_id']}"),
                             headers={"After-Seq": f"{stream}:{last_seq(reply)}"})
        assert answer["status"] == "ok", answer
        assert list(answer["positions"]) == [stream]
        status = await w.ask(names.subject("query.projectors.status"))
        streams = [s["stream"] for p in status["projectors"] for s in p["streams"]]
        assert stream in streams


async def test_the_command_index_bucket_is_prefixed(deployment, names):
    async with deployment.connect() as w:
        command_id = fresh("cmd")
        reply = await create_post(w, headers={"Command-Id": command_id})
        await index_has_read(w, "blogpost", last_seq(reply))
        bucket = names.bucket("jetsource_command_index")
        kv = await w.js.key_value(bucket)
        entry = json.loads((await kv.get(command_id)).value)
        assert entry["aggregate_id"] == reply["aggregate_id"]
        assert entry["events"][0]["stream"] == names.stream("blogpost")


@pytest.mark.managed("needs a server no other application uses")
async def test_under_a_prefix_nothing_answers_or_is_stored_unprefixed(deployment, names):
    if not names.prefix:
        pytest.skip("runs under --subject-prefix")
    async with deployment.connect() as w:
        for subject in ("cmd.blogpost.p1.create", "status.c1", "errors.get.c1", "errors.list.blogpost.p1",
                        "query.blogposts.list", "query.projectors.status"):
            with pytest.raises(NoAnswer):
                await w.request(subject, b"{}", timeout=2)
        answer = await w.ask("$JS.API.STREAM.NAMES", b"{}")
        assert "EVT_BLOGPOST" not in answer["streams"] and "EVT_ACCOUNT" not in answer["streams"]
        assert set(answer["streams"]) >= {names.stream("blogpost"), names.stream("account"),
                                          "KV_" + names.bucket("jetsource_command_index")}, answer


@pytest.mark.managed("starts jetsource with invalid prefixes")
@pytest.mark.parametrize("prefix", ["Acme", "acme..shop", "acme.cmd", "acme_shop", "x" * 65])
def test_an_invalid_prefix_fails_the_start_naming_the_setting(deployment, prefix):
    managed = deployment.managed
    argv = [managed.jetsource_bin, "run", "--nats-url", managed.url, "--subject-prefix", prefix]
    done = subprocess.run(argv, env=managed.jetsource_env(), cwd=managed.dir, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "subject_prefix" in done.stderr, done.stderr
    assert "jetsource ready" not in done.stderr
