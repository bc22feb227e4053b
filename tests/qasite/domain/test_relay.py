"""The outbox relay (qasite/domain/relay.py) against a real redis-server and socket worker."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select, update

from herald_contract.envelope import decode_envelope
from herald_contract.keys import KeyLayout
from publisher.publish import Publisher
from qasite.core.settings import Settings
from qasite.domain.models import OutboxEvent, utcnow
from qasite.domain.relay import OutboxRelay
from tests.qasite.support import QA, RecordingSink, running_qa, wait_until
from tests.support.client import HeraldTestClient
from tests.support.redis_server import RedisServer
from tests.support.tcp_proxy import TcpProxy
from tests.support.worker import running_worker, ws_url

KEYS = KeyLayout("herald")
END_OF_TEST = {"type": "end-of-test"}


def history(server: RedisServer, channel: str) -> list[tuple[int, str, Any]]:
    """(offset, event_id, data) of every publication in *channel*'s Redis history."""
    client: redis.Redis = server.client()
    entries = client.xrange(KEYS.history(channel))
    out = []
    for entry_id, fields in entries:
        envelope = decode_envelope(fields[b"p"])
        out.append((int(entry_id.split(b"-")[0]), envelope.event_id, envelope.data))
    return out


async def outbox_rows(qa: QA, channel: str) -> list[OutboxEvent]:
    async with qa.context.db.reads() as session:
        query = select(OutboxEvent).where(OutboxEvent.channel == channel).order_by(OutboxEvent.id)
        return list((await session.scalars(query)).all())


async def test_events_reach_redis_in_outbox_order_with_their_event_ids(
    settings: Settings, redis_server: RedisServer
) -> None:
    async with running_qa(settings.replace(redis_url=redis_server.url), record=False) as qa:
        asker, voter = await qa.signup(), await qa.signup()
        q = await qa.ask(asker, tags=["python"])
        for value in (1, -1, 1):
            await qa.client.put(
                f"/api/questions/{q['id']}/vote", json={"value": value}, headers=voter.headers
            )
        await qa.settle()
        channel = f"question:{q['id']}"
        rows = await outbox_rows(qa, channel)
        stored = history(redis_server, channel)
        assert [(offset, event_id) for offset, event_id, _ in stored] == [
            (i + 1, row.event_id) for i, row in enumerate(rows)
        ]
        assert [data["score"] for _, _, data in stored] == [1, -1, 1]
        assert history(redis_server, "tag:python")[0][2]["id"] == q["id"]


async def test_a_row_published_again_after_a_crash_is_not_delivered_twice(
    settings: Settings, redis_server: RedisServer
) -> None:
    async with running_qa(settings.replace(redis_url=redis_server.url), record=False) as qa:
        asker, voter = await qa.signup(), await qa.signup()
        q = await qa.ask(asker)
        await qa.client.put(
            f"/api/questions/{q['id']}/vote", json={"value": 1}, headers=voter.headers
        )
        await qa.settle()
        # As if the relay died after publishing but before marking the rows published.
        async with qa.context.db.write() as session:
            await session.execute(update(OutboxEvent).values(published_at=None))
        qa.context.nudge_relay()
        await qa.settle()
        assert [offset for offset, _, _ in history(redis_server, f"question:{q['id']}")] == [1]
        assert len(history(redis_server, "questions:new")) == 1


async def test_events_wait_while_the_bus_fails_and_go_out_in_order_when_it_returns(
    settings: Settings,
) -> None:
    sink = RecordingSink(failing=True)
    async with running_qa(settings, sink) as qa:
        asker, voter = await qa.signup(), await qa.signup()
        q = await qa.ask(asker)
        for value in (1, -1):
            r = await qa.client.put(
                f"/api/questions/{q['id']}/vote", json={"value": value}, headers=voter.headers
            )
            assert r.status_code == 200
        relay = qa.app.state.relay
        await wait_until(lambda: relay.failures > 0, "the relay tried the failing bus")
        assert await qa.pending_events() == 4  # questions:new, tag:python, two scores
        assert sink.events == []
        sink.failing = False
        await qa.settle()
        assert [e.channel for e in sink.events] == [
            "questions:new",
            "tag:python",
            f"question:{q['id']}",
            f"question:{q['id']}",
        ]
        assert [d["version"] for d in sink.of_type(f"question:{q['id']}", "score")] == [1, 2]
        assert len({e.event_id for e in sink.events}) == 4


async def test_redis_down_while_users_vote_and_answer_loses_and_repeats_nothing(
    settings: Settings, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Cut every link to Redis while users keep voting and answering, restore them: a
    websocket client that subscribed with recovery gets every event once, in order. (Redis
    itself keeps running: a restarted Redis would start new epochs, and the client would be
    told its recovery failed, docs/protocol.md "After a Redis failover".)"""
    async with (
        TcpProxy(redis_server.port) as proxy,
        running_qa(settings.replace(redis_url=proxy.url), record=False) as qa,
    ):
        asker = await qa.signup()
        voters = [await qa.signup() for _ in range(3)]
        q = await qa.ask(asker)
        channel, inbox = f"question:{q['id']}", f"user:{asker.id}"
        public_key = qa.context.settings.socket_public_key_pem
        async with running_worker(redis_url=proxy.url, jwt_public_key_pem=public_key) as worker:
            token = (await qa.client.post("/api/socket-token", headers=asker.headers)).json()[
                "token"
            ]
            client = HeraldTestClient(ws_url(worker), token=token)
            await client.open()
            await client.subscribe(channel)
            await client.subscribe(inbox)

            async def activity(round_: int) -> None:
                for i, voter in enumerate(voters):
                    r = await qa.client.put(
                        f"/api/questions/{q['id']}/vote",
                        json={"value": 1 if (i + round_) % 2 else -1},
                        headers=voter.headers,
                    )
                    assert r.status_code == 200, r.text
                await qa.answer(voters[round_ % len(voters)], q["id"], body=f"answer {round_}")

            await activity(0)
            await qa.settle()
            await proxy.cut()
            for round_ in (1, 2):
                await activity(round_)  # every write succeeds with the bus down
            assert await qa.pending_events() > 0
            await proxy.restore()
            await qa.settle()
            await client.reconnect()  # and a reconnect with recovery on top

            for name in (channel, inbox):
                expected = [row.payload for row in await outbox_rows(qa, name)]
                # A last publication closes the channel's stream: deliveries are in order,
                # so a duplicate of anything before it would have arrived before it.
                async with Publisher(redis_server.url) as publisher:
                    await publisher.publish(name, END_OF_TEST)
                await wait_until(
                    lambda name=name: END_OF_TEST in client.data(name), f"the end of {name}"
                )
                assert client.data(name) == [*expected, END_OF_TEST]
                assert client.offsets(name) == list(range(1, len(expected) + 2))
            assert len(client.data(channel)) == 3 * 4 + 1  # 3 x (3 votes, 1 answer), the end
            await client.close()


async def test_two_relays_on_one_database_deliver_each_row_once(
    settings: Settings, redis_server: RedisServer
) -> None:
    async with running_qa(settings.replace(redis_url=redis_server.url), record=False) as qa:
        await qa.app.state.relay.stop()
        asker = await qa.signup()
        voters = [await qa.signup() for _ in range(4)]
        q = await qa.ask(asker)
        for voter in voters:
            await qa.client.put(
                f"/api/questions/{q['id']}/vote", json={"value": 1}, headers=voter.headers
            )
        pending = await qa.pending_events()
        async with Publisher(redis_server.url) as one, Publisher(redis_server.url) as two:
            relays = [OutboxRelay(qa.context.db, sink, batch_size=2) for sink in (one, two)]
            while await qa.pending_events():
                await asyncio.gather(*(relay.drain_once() for relay in relays))
        channel = f"question:{q['id']}"
        assert [data["version"] for _, _, data in history(redis_server, channel)] == [1, 2, 3, 4]
        if qa.context.db.dialect == "postgresql":  # one relay at a time: nothing sent twice
            assert sum(relay.published for relay in relays) == pending


async def test_a_row_the_bus_can_never_take_is_dropped_and_later_rows_still_go_out(
    settings: Settings, redis_server: RedisServer
) -> None:
    async with running_qa(settings.replace(redis_url=redis_server.url), record=False) as qa:
        await qa.app.state.relay.stop()
        async with qa.context.db.write() as session:
            session.add(OutboxEvent(channel="Not A Channel", payload={"x": 1}))
            session.add(OutboxEvent(channel="question:5", payload={"type": "score"}))
        async with Publisher(redis_server.url) as publisher:
            relay = OutboxRelay(qa.context.db, publisher)
            assert await relay.drain_once() == 2
        assert relay.dropped == 1
        assert [data for _, _, data in history(redis_server, "question:5")] == [{"type": "score"}]
        assert await qa.pending_events() == 0


async def test_published_rows_past_the_retention_are_pruned_and_pending_ones_kept(
    settings: Settings,
) -> None:
    async with running_qa(settings) as qa:
        await qa.app.state.relay.stop()
        old = utcnow() - dt.timedelta(days=2)
        async with qa.context.db.write() as session:
            session.add(OutboxEvent(channel="question:1", payload={}, published_at=old))
            session.add(OutboxEvent(channel="question:1", payload={}, published_at=utcnow()))
            session.add(OutboxEvent(channel="question:1", payload={}, created_at=old))
        relay = OutboxRelay(qa.context.db, RecordingSink(), retention_s=86400)
        assert await relay.prune() == 1
        async with qa.context.db.reads() as session:
            rows = (await session.scalars(select(OutboxEvent))).all()
        assert len(rows) == 2
        assert await qa.pending_events() == 1


class HeldSink:
    """An EventSink whose publish waits until the test releases it."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.published: list[str] = []

    async def publish(self, channel: str, data: Any, *, event_id: str = "") -> object:
        self.entered.set()
        await self.release.wait()
        self.published.append(event_id)
        return None


async def test_stopping_lets_the_batch_in_flight_finish_and_be_marked(qa: QA) -> None:
    await qa.app.state.relay.stop()
    await qa.ask(await qa.signup())
    sink = HeldSink()
    relay = OutboxRelay(qa.context.db, sink, poll_interval_s=60.0)
    relay.start()
    await asyncio.wait_for(sink.entered.wait(), 10)
    stopping = asyncio.create_task(relay.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done(), "stop() returned with a publish in flight"
    sink.release.set()
    await asyncio.wait_for(stopping, 10)
    assert sink.published, "the batch in flight was not finished"
    assert await qa.pending_events() == 0  # and its rows were marked published


async def test_a_batch_that_outlasts_the_grace_is_cancelled(
    qa: QA, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("qasite.domain.relay.STOP_GRACE_S", 0.05)
    await qa.app.state.relay.stop()
    await qa.ask(await qa.signup())
    sink = HeldSink()  # never released
    relay = OutboxRelay(qa.context.db, sink, poll_interval_s=60.0)
    relay.start()
    await asyncio.wait_for(sink.entered.wait(), 10)
    await asyncio.wait_for(relay.stop(), 10)
    assert sink.published == []
    assert await qa.pending_events() > 0  # nothing marked: published again by the next relay
