"""PROTOCOL.md, "Operating persisted projections": an event the `blogposts`
projection cannot apply is parked under `<name>.parked.<stream>.<seq>` in
`jetsource_projectors` and halts it (policy `stop`); `skip-parked` gives it
up for good and the projection resumes after it; a second skip finds it
not parked, a body that is not `{"stream","seq"}` is refused, and
`replay-parked` then has nothing to apply."""

import json

from support.steps import create_post, last_seq
from support.wire import eventually, fresh


def blogposts(status):
    [projector] = [p for p in status["projectors"] if p["name"] == "blogposts"]
    return projector


async def test_a_parked_event_skipped_for_good_lets_a_halted_projection_resume(deployment, names):
    async with deployment.connect() as w:
        stream = names.stream("blogpost")
        # A post event no reader decodes, stored past the handlers.
        ack = await w.js.publish(names.event("blogpost", fresh("broken"), "BlogPostCreated"),
                                 json.dumps({"not": "a post"}).encode(),
                                 headers={"Command-Id": fresh("by-hand")})
        seq = ack.seq

        async def halted():
            projector = blogposts(await w.ask(names.query("projectors.status")))
            return projector if projector["phase"] == "halted" else None

        projector = await eventually(halted, "the projection halted at the event", within=60)
        assert f"{stream} #{seq}" in projector["error"], projector
        control = await w.js.key_value(names.bucket("jetsource_projectors"))
        entry = await control.get(f"blogposts.parked.{stream}.{seq}")
        parked = json.loads(entry.value)
        assert (parked["stream"], parked["seq"]) == (stream, seq), parked

        skip = names.subject("projector.blogposts.skip-parked")
        refused = await w.ask(skip, b"[1]")
        assert refused["status"] == "refused" and refused["reason"], refused
        answer = await w.ask(skip, json.dumps({"stream": stream, "seq": seq}).encode())
        assert answer == {"status": "skipped"}, answer

        # Live again, after the skipped event, and the next post is listed.
        reply = await create_post(w)
        found = await w.query(f"blogposts.get.{reply['aggregate_id']}",
                              after_seq=str(last_seq(reply)))
        assert found["status"] == "ok", found
        assert blogposts(await w.ask(names.query("projectors.status")))["phase"] == "live"
        again = await w.ask(skip, json.dumps({"stream": stream, "seq": seq}).encode())
        assert again == {"status": "not_parked"}, again
        replayed = await w.ask(names.subject("projector.blogposts.replay-parked"))
        assert replayed["applied"] == 0 and replayed["failed"] == [], replayed


async def test_a_process_manager_s_parked_trigger_is_skipped_for_good(deployment, names):
    """PROTOCOL.md, "Process managers": `pm.<name>.control.skip-parked` and
    `replay-parked`; the same undecodable event parks a trigger of
    scheduled publishing (and the projection, skipped here too)."""
    async with deployment.connect() as w:
        stream = names.stream("blogpost")
        ack = await w.js.publish(names.event("blogpost", fresh("broken"), "BlogPostCreated"),
                                 json.dumps({"not": "a post either"}).encode(),
                                 headers={"Command-Id": fresh("by-hand")})
        seq = ack.seq
        bucket = await w.js.key_value(names.bucket("pm_publishing"))

        async def parked():
            try:
                entry = await bucket.get(f"parked.{stream}.{seq}")
            except Exception:
                return None
            return json.loads(entry.value) if entry.value else None

        record = await eventually(parked, "the trigger parked", within=60)
        assert (record["manager"], record["stream"], record["seq"]) == ("publishing", stream, seq)
        body = json.dumps({"stream": stream, "seq": seq}).encode()
        control = names.subject("pm.publishing.control")
        replayed = await w.ask(f"{control}.replay-parked")
        assert replayed["applied"] == 0 and len(replayed["failed"]) >= 1, replayed
        assert await w.ask(f"{control}.skip-parked", body) == {"status": "skipped"}
        assert await w.ask(f"{control}.skip-parked", body) == {"status": "not_parked"}
        assert await parked() is None

        # The projection halted at the same event: skipped there as well.
        async def halted():
            projector = blogposts(await w.ask(names.query("projectors.status")))
            return projector if projector["phase"] == "halted" else None

        await eventually(halted, "the projection halted at the event", within=60)
        answer = await w.ask(names.subject("projector.blogposts.skip-parked"), body)
        assert answer == {"status": "skipped"}, answer
