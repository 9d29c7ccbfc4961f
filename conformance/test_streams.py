"""PROTOCOL.md, "Events" (the stream's settings), "Streams and subjects"
and "Versions": one stream per aggregate type with the documented
settings, history that cannot be deleted or purged, the contract version
in the streams' metadata and in every schema file, and what jetsource does
at start with a stream of another version."""

import asyncio
import json
import re
from pathlib import Path

import pytest

from support.schemas import CONTRACT_KEYWORD
from support.steps import create_post, last_seq, open_account

CONTRACT_METADATA_KEY = "jetsource.contract"
PROTOCOL_MD = Path(__file__).resolve().parent.parent / "PROTOCOL.md"


async def raw_stream_config(w, aggregate_type):
    """The stream's configuration as JetStream answers it (every field)."""
    answer = await w.ask(f"$JS.API.STREAM.INFO.{w.names.stream(aggregate_type)}")
    assert "error" not in answer, answer
    return answer["config"]


@pytest.mark.parametrize("aggregate_type", ["blogpost", "account"])
async def test_each_aggregate_type_has_its_stream_with_the_documented_settings(
        deployment, names, aggregate_type):
    async with deployment.connect() as w:
        config = await raw_stream_config(w, aggregate_type)
        assert config["name"] == names.stream(aggregate_type)
        assert config["subjects"] == [names.stream_subjects(aggregate_type)]
        assert config["storage"] == "file"
        assert config.get("allow_atomic") is True
        assert config.get("allow_direct") is True
        assert config.get("deny_delete") is True
        assert config.get("deny_purge") is True
        assert config["discard"] == "new"
        assert config.get("max_age", 0) == 0
        assert config.get("max_msgs", -1) == -1
        assert config.get("max_msgs_per_subject", -1) == -1
        assert config["metadata"][CONTRACT_METADATA_KEY] == "2"


async def test_an_event_cannot_be_deleted(deployment, names):
    async with deployment.connect() as w:
        reply = await create_post(w)
        seq = last_seq(reply)
        answer = await w.ask(f"$JS.API.STREAM.MSG.DELETE.{names.stream('blogpost')}",
                             json.dumps({"seq": seq}).encode())
        assert "error" in answer, answer
        assert (await w.event_at("blogpost", seq)).seq == seq


async def test_a_stream_cannot_be_purged(deployment, names):
    async with deployment.connect() as w:
        reply = await create_post(w)
        post_id = reply["aggregate_id"]
        # Only this test's own aggregate, should the refusal be missing.
        answer = await w.ask(f"$JS.API.STREAM.PURGE.{names.stream('blogpost')}",
                             json.dumps({"filter": names.events_of("blogpost", post_id)}).encode())
        assert "error" in answer, answer
        assert len(await w.events_of("blogpost", post_id)) == 1


async def test_every_schema_file_names_the_streams_contract_version(deployment, schemas):
    async with deployment.connect() as w:
        config = await raw_stream_config(w, "blogpost")
        version = config["metadata"][CONTRACT_METADATA_KEY]
        assert schemas.files, "no schema files"
        for key, schema in schemas.files.items():
            assert schema.get(CONTRACT_KEYWORD) == version, key


@pytest.mark.skipif(not PROTOCOL_MD.exists(), reason="PROTOCOL.md is not beside the suite")
async def test_protocol_md_names_the_contract_version_of_the_streams(deployment):
    title = PROTOCOL_MD.read_text(encoding="utf-8").splitlines()[0]
    found = re.search(r"version (\d+)", title)
    async with deployment.connect() as w:
        config = await raw_stream_config(w, "blogpost")
    assert found and found.group(1) == config["metadata"][CONTRACT_METADATA_KEY], title


async def set_contract_version(w, aggregate_type, version):
    config = await raw_stream_config(w, aggregate_type)
    config["metadata"][CONTRACT_METADATA_KEY] = version
    answer = await w.ask(f"$JS.API.STREAM.UPDATE.{config['name']}", json.dumps(config).encode())
    assert "error" not in answer, answer


@pytest.mark.managed("restarts jetsource after changing a stream's contract version")
async def test_jetsource_adopts_a_stream_of_version_1_and_writes_2(deployment):
    async with deployment.connect() as w:
        await open_account(w)
        await set_contract_version(w, "account", "1")
    await deployment.restart_jetsource()
    async with deployment.connect() as w:
        config = await raw_stream_config(w, "account")
        assert config["metadata"][CONTRACT_METADATA_KEY] == "2"
        assert (await open_account(w))["status"] == "accepted"


@pytest.mark.managed("starts jetsource on a stream of another contract version")
def test_jetsource_refuses_to_start_on_a_stream_of_a_version_it_cannot_read(deployment):
    managed = deployment.managed

    async def set_version(version):
        async with deployment.connect() as w:
            await set_contract_version(w, "account", version)

    managed.jetsource.stop()
    asyncio.run(set_version("3"))
    try:
        with pytest.raises(RuntimeError, match="exited"):
            managed.start_jetsource()
        assert managed.jetsource.proc.returncode != 0

        async def unchanged():
            async with deployment.connect() as w:
                return (await raw_stream_config(w, "account"))["metadata"][CONTRACT_METADATA_KEY]

        # It left the stream as it was.
        assert asyncio.run(unchanged()) == "3"
    finally:
        asyncio.run(set_version("2"))
        managed.start_jetsource()
