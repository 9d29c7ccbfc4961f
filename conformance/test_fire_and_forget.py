"""PROTOCOL.md, "Request/reply or fire-and-forget": a command published
without a reply subject is processed all the same; its outcome is found by
id (`status.<id>`, `errors.get.<id>`)."""

from support.wire import eventually, fresh


async def test_a_command_without_a_reply_subject_is_processed(deployment, names):
    async with deployment.connect() as w:
        post_id, command_id = fresh("post"), fresh("cmd")
        await w.publish(names.command("blogpost", post_id, "create"),
                        b'{"title":"Quiet","body":"Text","publish":true}', {"Command-Id": command_id})

        async def accepted():
            status = await w.status(command_id)
            return status if status["status"] == "accepted" else None

        status = await eventually(accepted, "status.<id> of the published command")
        assert (status["aggregate_type"], status["aggregate_id"]) == ("blogpost", post_id)
        stored = await w.events_of("blogpost", post_id)
        assert [e.seq for e in stored] == [e["seq"] for e in status["events"]]
        assert [e.event_type for e in stored] == ["BlogPostCreated", "BlogPostPublished"]
        assert all(e.headers["Command-Id"] == command_id for e in stored)


async def test_a_rejected_command_without_a_reply_subject_is_found_in_the_error_cache(deployment, names):
    async with deployment.connect() as w:
        post_id, command_id = fresh("post"), fresh("cmd")
        await w.publish(names.command("blogpost", post_id, "publish"), b"{}", {"Command-Id": command_id})

        async def rejected():
            answer = await w.errors_get(command_id)
            return answer if answer["status"] == "rejected" else None

        answer = await eventually(rejected, "errors.get.<id> of the published command")
        assert answer["code"] == "not_found"
        assert (answer["aggregate_type"], answer["aggregate_id"], answer["command"]) == (
            "blogpost", post_id, "publish")
        assert (await w.status(command_id))["status"] == "rejected"
        assert await w.events_of("blogpost", post_id) == []

