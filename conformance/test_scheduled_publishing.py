"""PROTOCOL.md, "The reference application": `schedule_publish` and
`unschedule_publish` on a blog post, and the `publishing` process manager
the `jetsource` binary hosts, which publishes a scheduled post once at its
time (and never one unscheduled or published by hand first)."""

from datetime import datetime, timedelta, timezone

from support.steps import assert_rejected, create_post
from support.wire import eventually

AHEAD = timedelta(seconds=2)


def at(delta: timedelta) -> str:
    return (datetime.now(timezone.utc) + delta).isoformat()


def stored_time(text: str) -> datetime:
    """A stream's RFC 3339 time (nanoseconds, `Z`), to the second below."""
    return datetime.strptime(text.split(".")[0].rstrip("Z"), "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=timezone.utc)


async def published(w, post: str) -> list:
    return [e for e in await w.events_of("blogpost", post) if e.event_type == "BlogPostPublished"]


async def test_a_scheduled_post_is_published_once_at_its_time(deployment):
    async with deployment.connect() as w:
        scheduled = (await create_post(w))["aggregate_id"]
        withdrawn = (await create_post(w))["aggregate_id"]
        by_hand = (await create_post(w))["aggregate_id"]
        for post in (scheduled, withdrawn, by_hand):
            reply = await w.command("blogpost", post, "schedule_publish", {"at": at(AHEAD)})
            assert reply["status"] == "accepted", reply
            [event] = reply["events"]
            assert event["type"] == "BlogPostPublishScheduled"
        assert (await w.command("blogpost", withdrawn, "unschedule_publish", {}))["status"] == "accepted"
        assert (await w.command("blogpost", by_hand, "publish", {}))["status"] == "accepted"

        async def is_published():
            return len(await published(w, scheduled)) == 1

        await eventually(is_published, "the scheduled post is published", within=30)
        [event] = await published(w, scheduled)
        # Sent by the process manager, under its deterministic command id.
        assert event.headers["Command-Id"].startswith("pm-"), event.headers
        stored = {e.event_type: e for e in await w.events_of("blogpost", scheduled)}
        # Not before its time (both to the second).
        scheduled_at = stored_time(stored["BlogPostPublishScheduled"].body["at"])
        assert stored_time(event.time) >= scheduled_at, (event.time, scheduled_at)
        assert await published(w, withdrawn) == []
        assert len(await published(w, by_hand)) == 1


async def test_a_schedule_in_the_past_or_of_a_published_post_is_refused(deployment):
    async with deployment.connect() as w:
        post = (await create_post(w))["aggregate_id"]
        for bad in (at(-timedelta(minutes=1)), "tomorrow", "", at(timedelta(days=4000))):
            assert_rejected(await w.command("blogpost", post, "schedule_publish", {"at": bad}),
                            "validation")
        assert_rejected(await w.command("blogpost", post, "unschedule_publish", {}), "validation")
        published_post = (await create_post(w, publish=True))["aggregate_id"]
        assert_rejected(await w.command("blogpost", published_post, "schedule_publish",
                                        {"at": at(AHEAD)}), "validation")
