"""Locust against the ingest API: viewers tapping like the page does.

    locust -f benches/locustfile.py --headless -u 100 -r 20 -t 30s --host http://127.0.0.1:5000

Each simulated viewer has its own user id and taps the allowed emojis, skewed like a match
(the first the most): one tap per request nine times in ten, without a timestamp (the ingest
stamps it), as the page's buttons send; otherwise a batch of taps with their timestamps in one
request, as a client that queued taps sends them. Settings, from the environment:

- EMOSTREAM_EMOJIS: the ingest's allow-list, comma-separated (default: the ingest's default).
- EMOSTREAM_INGEST_TOKEN: the bearer token, when the ingest requires one (--ingest-token).
- EMOSTREAM_LOCUST_BATCH: taps in a batch request (default 10).

Every request is checked: 202 with the number of events accepted, else a failure naming the
status and the body.
"""

import json
import os
import random
import time
import uuid

from locust import FastHttpUser, between, task

# The ingest's default allow-list (EmojiSet::DEFAULT in model/src/emojis.rs; the Locust test
# in make test fails on a 400 when the two differ).
DEFAULT_EMOJIS = "🔥,😂,👏,❤️,🎉,😮,💯,🙌,😢,🏏,👍,😡"
EMOJIS = [e for e in os.environ.get("EMOSTREAM_EMOJIS", DEFAULT_EMOJIS).split(",") if e]
WEIGHTS = [1 / (k + 1) ** 1.1 for k in range(len(EMOJIS))]
TOKEN = os.environ.get("EMOSTREAM_INGEST_TOKEN")
BATCH = int(os.environ.get("EMOSTREAM_LOCUST_BATCH", "10"))


class Viewer(FastHttpUser):
    """One viewer: taps every 0.1-1 s, now and then a batch."""

    wait_time = between(0.1, 1.0)

    def on_start(self):
        self.user_id = f"locust-{uuid.uuid4().hex[:12]}"
        self.headers = {"content-type": "application/json"}
        if TOKEN:
            self.headers["authorization"] = f"Bearer {TOKEN}"

    def tap(self, stamped):
        tap = {"user_id": self.user_id, "emoji_type": random.choices(EMOJIS, WEIGHTS)[0]}
        if stamped:
            tap["timestamp"] = int(time.time() * 1000)
        return tap

    def post(self, body, events, name):
        with self.client.post(
            "/emoji", data=json.dumps(body), headers=self.headers, name=name, catch_response=True
        ) as response:
            want = f'{{"accepted":{events}}}'
            if response.status_code != 202 or response.text != want:
                response.failure(f"{response.status_code} {response.text!r}, wanted 202 {want}")

    @task(9)
    def single(self):
        self.post(self.tap(stamped=False), 1, "/emoji (one tap)")

    @task(1)
    def batch(self):
        self.post([self.tap(stamped=True) for _ in range(BATCH)], BATCH, "/emoji (batch)")
