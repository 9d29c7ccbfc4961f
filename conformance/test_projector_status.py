"""PROTOCOL.md, "Status" of projectors: `query.projectors.status` names
each projector with its kind, phase and per-stream positions; `lag` is
`stream_last_seq - applied_seq`. After a restart the projector is live
again: a persisted one may be `standby` first, until the lease of a holder
that died without giving it up (a kill -9 earlier) runs out."""

import pytest

from support.steps import create_post, last_seq
from support.wire import eventually

PHASES = {"starting", "standby", "replaying", "live", "failing", "halted", "stopped"}


def blogposts(status):
    [projector] = [p for p in status["projectors"] if p["name"] == "blogposts"]
    return projector


async def test_the_status_names_the_blogposts_projector_and_its_stream(deployment, names):
    async with deployment.connect() as w:
        reply = await create_post(w)
        # Once it applied the write, its status must show at least that.
        await w.query(f"blogposts.get.{reply['aggregate_id']}", after_seq=str(last_seq(reply)))
        status = await w.ask(names.query("projectors.status"))
        projector = blogposts(status)
        assert projector["kind"] in ("in_memory", "persisted"), projector
        assert projector["phase"] in PHASES, projector
        assert projector["phase"] == "live", projector
        [stream] = projector["streams"]
        assert stream["stream"] == names.stream("blogpost")
        assert stream["subjects"] == [names.stream_subjects("blogpost")]
        assert stream["applied_seq"] >= last_seq(reply)
        assert stream["stream_last_seq"] >= stream["applied_seq"]
        assert stream["lag"] == stream["stream_last_seq"] - stream["applied_seq"]
        assert stream["pending"] >= 0 and stream["head_at_start"] >= 0
        assert stream["caught_up"] is True


@pytest.mark.managed("restarts jetsource")
async def test_after_a_restart_the_status_shows_the_replayed_projector(deployment, names):
    async with deployment.connect() as w:
        reply = await create_post(w)
        head = await w.last_seq("blogpost")
    await deployment.restart_jetsource()
    async with deployment.connect() as w:
        answer = await w.query(f"blogposts.get.{reply['aggregate_id']}", after_seq=str(head))
        assert answer["status"] == "ok", answer
        async def live():
            projector = blogposts(await w.ask(names.query("projectors.status")))
            assert projector["phase"] in PHASES, projector
            return projector if projector["phase"] == "live" else None

        # A lease left by a killed holder expires within `lease_ttl` (5 s).
        projector = await eventually(live, "the restarted projector live", within=20)
        [stream] = projector["streams"]
        assert stream["head_at_start"] == head, stream
        assert stream["applied_seq"] >= head and stream["caught_up"] is True, stream
