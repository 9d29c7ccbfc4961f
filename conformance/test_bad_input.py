"""Bad input of every kind PROTOCOL.md names ("Tokens", "Commands", the
`bad_request` code, `Expected-Seq`, `After-Seq`): each is answered
`bad_request` (a command: nothing written, and jetsource keeps serving),
never a panic, a hang or silence."""

import json

import pytest

from support.steps import (assert_no_event_of_command, assert_nothing_written, assert_rejected,
                           create_post, post, stream_heads)
from support.wire import SILENCE, NoAnswer, eventually, fresh

DEFAULT_MAX_BODY = 983_040  # 960 KiB, `[handlers] max_body`'s default (config/jetsource.toml)


def stem() -> str:
    return fresh("bad").replace("-", "")


# Tokens in a command's subject: (name, aggregate id, command).
SUBJECT_TOKENS = {
    "id_star": lambda s: (f"{s}*x", "create"),
    "id_wildcard": lambda s: ("*", "create"),
    "id_gt": lambda s: (f"{s}>x", "create"),
    "id_non_ascii": lambda s: (f"{s}é", "create"),
    "id_too_long": lambda s: (s + "x" * (129 - len(s)), "create"),
    "command_star": lambda s: (s, "cre*ate"),
    "command_wildcard": lambda s: (s, "*"),
    "command_non_ascii": lambda s: (s, "créate"),
    "command_too_long": lambda s: (s, "c" * 129),
    "command_unknown": lambda s: (s, "archive"),
    "command_upper_case": lambda s: (s, "CREATE"),
}


@pytest.mark.parametrize("case", sorted(SUBJECT_TOKENS))
async def test_a_bad_token_in_the_subject_is_bad_request(deployment, names, case):
    async with deployment.connect() as w:
        s = stem()
        aggregate_id, command = SUBJECT_TOKENS[case](s)
        command_id = fresh("cmd")
        heads = await stream_heads(w)
        reply = await w.ask(names.command("blogpost", aggregate_id, command), json.dumps(post()).encode(),
                            {"Command-Id": command_id})
        assert_rejected(reply, "bad_request")
        await assert_no_event_of_command(w, command_id, heads)


@pytest.mark.parametrize("subject", ["cmd.blogpost.{s}", "cmd.blogpost.{s}.create.now",
                                     "cmd.blogpost.{s}.x.create", "cmd.blogpost.>", "cmd.blogpost.{s}.>",
                                     "cmd.blogpost", "cmd.nope.{s}.create", "cmd.BLOGPOST.{s}.create",
                                     "cmd.blog*.{s}.create"])
async def test_a_subject_not_of_the_commands_form_or_of_an_unknown_type_is_bad_request(
        deployment, names, subject):
    async with deployment.connect() as w:
        s, command_id = stem(), fresh("cmd")
        heads = await stream_heads(w)
        reply = await w.ask(names.subject(subject.format(s=s)), json.dumps(post()).encode(),
                            {"Command-Id": command_id})
        assert_rejected(reply, "bad_request")
        await assert_no_event_of_command(w, command_id, heads)
        await assert_nothing_written(w, s)


async def test_an_empty_token_in_the_subject_reaches_no_one(deployment, names):
    # PROTOCOL.md, Tokens: such a subject is no NATS subject; the server
    # delivers it to no subscription, so a request gets no responders.
    async with deployment.connect() as w:
        with pytest.raises(NoAnswer) as refused:
            await w.ask(names.subject("cmd.blogpost..create"), json.dumps(post()).encode(),
                        timeout=SILENCE)
        assert refused.value.why == "no_responders"


HEADER_VALUES = {
    "dot": "a.{s}",
    "star": "a*{s}",
    "gt": "a>{s}",
    "space": "a {s}",
    "tab": "a\t{s}",
    # nats-py sends CR and LF as spaces; the bytes themselves are sent raw below.
    "cr_lf": "a\r\n{s}",
    "non_ascii": "ä{s}",
    "empty": "",
    "too_long": "{s}" + "x" * 129,
}


@pytest.mark.parametrize("kind", sorted(HEADER_VALUES))
@pytest.mark.parametrize("header", ["Command-Id", "Correlation-Id", "Causation-Id"])
async def test_a_bad_id_header_is_bad_request_and_writes_nothing(deployment, schemas, header, kind):
    async with deployment.connect() as w:
        s = stem()
        value = HEADER_VALUES[kind].format(s=s)
        post_id = fresh("post")
        reply = await w.command("blogpost", post_id, "create", post(), {header: value})
        schemas.validate("command_reply", reply)
        assert_rejected(reply, "bad_request")
        if header == "Command-Id":
            assert reply["command_id"] == "", reply
        if len(value) > 2:
            assert value not in reply["reason"]
        await assert_nothing_written(w, post_id)


BODIES = {
    "malformed_json": b'{"title": "T", "body": ',
    "not_json": b"title=T&body=B",
    "string": b'"T"',
    "null": b"null",
    "array": b'["T", "B"]',
    "number": b"7",
    "missing_field": b'{"title": "T"}',
    "wrong_type": b'{"title": 7, "body": "B"}',
    "duplicate_field": b'{"title": "T", "title": "U", "body": "B"}',
    "trailing_bytes": b'{"title": "T", "body": "B"} x',
    "two_objects": b'{"title": "T", "body": "B"}{}',
    "byte_order_mark": b'\xef\xbb\xbf{"title": "T", "body": "B"}',
    "invalid_utf8": b'{"title": "T\xff", "body": "B"}',
    "unknown_field": b'{"title": "T", "body": "B", "tags": []}',
    "deeply_nested": b'{"title": "T", "body": "B", "x": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
}


@pytest.mark.parametrize("case", sorted(BODIES))
async def test_a_body_that_does_not_decode_to_the_command_is_bad_request(deployment, case):
    async with deployment.connect() as w:
        post_id = fresh("post")
        reply = await w.command("blogpost", post_id, "create", BODIES[case])
        assert_rejected(reply, "bad_request")
        await assert_nothing_written(w, post_id)


def body_of_size(size: int) -> bytes:
    """A create whose title is too long for the blog's rule (at most 200
    characters), `size` bytes in all: past the size check it is a
    `validation` rejection, so nothing is written even when it passes."""
    head, tail = b'{"body": "B", "title": "', b'"}'
    return head + b"t" * (size - len(head) - len(tail)) + tail


async def test_a_body_of_max_body_bytes_passes_the_size_check(deployment):
    async with deployment.connect() as w:
        post_id = fresh("post")
        body = body_of_size(DEFAULT_MAX_BODY)
        assert len(body) == DEFAULT_MAX_BODY
        reply = await w.command("blogpost", post_id, "create", body)
        assert_rejected(reply, "validation")
        await assert_nothing_written(w, post_id)


async def test_a_body_one_byte_over_max_body_is_bad_request(deployment):
    async with deployment.connect() as w:
        post_id = fresh("post")
        reply = await w.command("blogpost", post_id, "create", body_of_size(DEFAULT_MAX_BODY + 1))
        assert_rejected(reply, "bad_request")
        await assert_nothing_written(w, post_id)


EXPECTED_SEQ_VALUES = ["x", "-1", "+1", "1.5", "1e3", "0x1", "", "1 2", "١", "18446744073709551616",
                       "99999999999999999999999"]


@pytest.mark.parametrize("value", EXPECTED_SEQ_VALUES)
async def test_an_expected_seq_that_is_not_a_u64_is_bad_request(deployment, value):
    async with deployment.connect() as w:
        post_id = fresh("post")
        reply = await w.command("blogpost", post_id, "create", post(), {"Expected-Seq": value})
        assert_rejected(reply, "bad_request")
        await assert_nothing_written(w, post_id)


AFTER_SEQ_VALUES = ["x", "-1", "+1", "1.5", "", "1 2", "1,2", "99999999999999999999999",
                    "{stream}:", "{stream}: 1", ":1", "{stream}:1,", "{stream}:x", "NOPE:1",
                    "{stream}:1,NOPE:1", "{stream_lower}:1"]


@pytest.mark.parametrize("value", AFTER_SEQ_VALUES)
async def test_a_malformed_after_seq_is_bad_request_at_once(deployment, names, value):
    stream = names.stream("blogpost")
    after = value.format(stream=stream, stream_lower=stream.lower())
    async with deployment.connect() as w:
        for path in ("blogposts.list", f"blogposts.get.{fresh('post')}"):
            answer = await w.query(path, after_seq=after)
            assert answer["status"] == "bad_request", (after, answer)
            assert answer["reason"]


# Echoed input: the junk is larger than a sixth of the server's max_payload,
# so an answer that repeats it escaped (each control byte as six) or that
# lists eight notices repeating it no longer fits in one message.
def junk_length(w) -> int:
    return max(200_000, w.nc.max_payload // 6 + 1)


JUNK = {"control": "\x01", "printable": "x"}


@pytest.mark.parametrize("kind", ["control", "printable"])
async def test_a_huge_junk_expected_seq_gets_a_reply_and_a_notice(deployment, kind):
    async with deployment.connect() as w:
        post_id, command_id = fresh("post"), fresh("cmd")
        junk = JUNK[kind] * junk_length(w)
        try:
            reply = await w.command("blogpost", post_id, "create", post(),
                                    {"Command-Id": command_id, "Expected-Seq": junk}, timeout=SILENCE)
        except NoAnswer as e:
            pytest.fail(str(e))
        assert_rejected(reply, "bad_request")

        async def noticed():
            answer = await w.errors_get(command_id)
            return answer if answer["status"] == "rejected" else None

        answer = await eventually(noticed, "errors.get of the junk command", within=SILENCE)
        assert answer["code"] == "bad_request"
        await assert_nothing_written(w, post_id)


@pytest.mark.parametrize("kind", ["control", "printable"])
async def test_eight_junk_commands_on_one_aggregate_leave_errors_list_answerable(deployment, names, kind):
    async with deployment.connect() as w:
        post_id = fresh("post")
        junk = JUNK[kind] * junk_length(w)
        ids = [fresh("cmd") for _ in range(8)]
        for command_id in ids:
            # Fire-and-forget: the reply is the test above's concern.
            await w.publish(names.command("blogpost", post_id, "create"), json.dumps(post()).encode(),
                            {"Command-Id": command_id, "Expected-Seq": junk})
        listed = set()

        async def all_eight():
            try:
                answer = await w.errors_list("blogpost", post_id, timeout=SILENCE)
            except NoAnswer:
                return None
            listed.update(r["command_id"] for r in answer["rejections"])
            return listed >= set(ids)

        await eventually(all_eight, "errors.list listing all eight junk commands", within=SILENCE)


@pytest.mark.parametrize("kind", ["control", "printable"])
async def test_a_huge_junk_after_seq_is_bad_request(deployment, kind):
    async with deployment.connect() as w:
        junk = JUNK[kind] * junk_length(w)
        try:
            answer = await w.query("blogposts.list", after_seq=junk, timeout=SILENCE)
        except NoAnswer as e:
            pytest.fail(str(e))
        assert answer["status"] == "bad_request"


@pytest.mark.parametrize("name", ["command-id", "COMMAND-ID"])
async def test_a_command_id_header_in_another_case_is_honoured_or_refused(deployment, name):
    async with deployment.connect() as w:
        post_id, command_id = fresh("post"), fresh("cmd")
        reply = await w.command("blogpost", post_id, "create", post(), {name: command_id})
        if reply["status"] == "rejected":
            assert reply["code"] == "bad_request", reply
            await assert_nothing_written(w, post_id)
        else:
            assert reply["command_id"] == command_id, reply


async def test_two_command_ids_on_one_message_are_refused_not_one_silently_taken(deployment, names):
    async with deployment.connect() as w:
        post_id, first, second = fresh("post"), fresh("cmd"), fresh("cmd")
        reply = await w.request_raw(names.command("blogpost", post_id, "create"),
                                    f"Command-Id: {first}\r\nCommand-Id: {second}\r\n".encode(),
                                    json.dumps(post()).encode())
        assert_rejected(reply, "bad_request")
        await assert_nothing_written(w, post_id)


# Header bytes nats-py's `headers` cannot carry, sent raw: a lone CR or LF
# inside a value, a value that is not UTF-8, a line without a colon.
RAW_HEADERS = {
    "cr_in_command_id": b"Command-Id: a\rb\r\n",
    "lf_in_command_id": b"Command-Id: a\nb\r\n",
    "invalid_utf8_command_id": b"Command-Id: a\xffb\r\n",
    "header_line_without_colon": b"Command-Id\r\n",
}


@pytest.mark.parametrize("case", sorted(RAW_HEADERS))
async def test_header_bytes_nats_py_cannot_send_are_bad_request(deployment, names, case):
    header_lines = RAW_HEADERS[case]
    async with deployment.connect() as w:
        post_id = fresh("post")
        try:
            reply = await w.request_raw(names.command("blogpost", post_id, "create"), header_lines,
                                        json.dumps(post()).encode(), timeout=SILENCE)
        except NoAnswer as e:
            pytest.fail(str(e))
        assert_rejected(reply, "bad_request")
    # And it keeps serving.
    async with deployment.connect() as w:
        await create_post(w)
