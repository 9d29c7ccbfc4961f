"""The blog listing, built by a projector in Python from the jetsource contract.

It attaches an ordered consumer to the stream EVT_BLOGPOST from its first
event, folds every blog post event up to the stream's last sequence (read
before attaching, so the listing is complete as of that moment), and prints
the same listing as `query.blogposts.list`:

    {"posts": [{"id", "title", "body", "published", "events", "last_seq"}, ...]}

ordered by id. Usage: python3 blog_listing.py [NATS_URL]
(default: $NATS_URL, else nats://127.0.0.1:4222). Needs nats-py.
"""

import asyncio
import json
import os
import sys

import nats

STREAM = "EVT_BLOGPOST"
SUBJECTS = "evt.blogpost.>"


def apply(posts, subject, seq, body):
    # evt.<aggregate_type>.<aggregate_id>.<EventType>; the body holds the
    # event's fields as JSON.
    _, _, post_id, event_type = subject.split(".")
    fields = json.loads(body) if body else {}
    post = posts.setdefault(
        post_id,
        {"id": post_id, "title": "", "body": "", "published": False, "events": 0, "last_seq": 0},
    )
    if event_type == "BlogPostCreated":
        post["title"] = fields["title"]
        post["body"] = fields["body"]
    elif event_type == "BlogPostTitleChanged":
        post["title"] = fields["title"]
    elif event_type == "BlogPostPublished":
        post["published"] = True
    else:
        # Never skip silently: an event this listing does not know is an error.
        raise ValueError(f"{STREAM} #{seq}: unknown event type {event_type}")
    post["events"] += 1
    post["last_seq"] = seq


async def listing(url):
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        head = (await js.stream_info(STREAM)).state.last_seq
        posts = {}
        if head > 0:
            sub = await js.subscribe(SUBJECTS, stream=STREAM, ordered_consumer=True)
            try:
                seq = 0
                while seq < head:
                    msg = await sub.next_msg(timeout=30)
                    seq = msg.metadata.sequence.stream
                    apply(posts, msg.subject, seq, msg.data)
            finally:
                await sub.unsubscribe()
        return {"posts": [posts[key] for key in sorted(posts)]}
    finally:
        await nc.close()


def main():
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
    print(json.dumps(asyncio.run(listing(url))))


if __name__ == "__main__":
    main()
