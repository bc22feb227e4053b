"""The relay counts what it publishes by the channel's namespace (issue 14, item 5): the
publishing library exports no metrics (redis and msgpack only), so the Q&A core does."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from herald_contract.namespaces_file import DEFAULT_FILE, default_namespaces
from qasite.core.settings import Settings
from tests.qasite.support import QA, running_qa
from tests.support.fleet import ROOT

NAME = "herald_qa_namespace_publications_total"
FEED = """
[[namespace]]
name = "feed"
subscribe = "anyone"
key = { type = "name", max_length = 20, chars = "a-z0-9_" }
"""


async def published_by_namespace(qa: QA) -> dict[str, float]:
    text = (await qa.client.get("/metrics")).text
    return {
        sample.labels["namespace"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == NAME
    }


async def test_what_the_relay_publishes_is_counted_by_namespace(qa: QA) -> None:
    zero = dict.fromkeys(default_namespaces().kinds, 0.0)
    assert await published_by_namespace(qa) == zero  # every kind, from the start
    asker, voter = await qa.signup(), await qa.signup()
    question = await qa.ask(asker, tags=["python", "asyncio"])
    await qa.client.put(
        f"/api/questions/{question['id']}/vote", json={"value": 1}, headers=voter.headers
    )
    await qa.settle()
    counts = await published_by_namespace(qa)
    assert counts == {**zero, "questions": 1.0, "tag": 2.0, "question": 1.0}
    text = (await qa.client.get("/metrics")).text
    assert f"herald_qa_outbox_published_total {sum(counts.values())}" in text


async def test_a_kind_of_the_namespace_file_is_a_label_value_of_the_relays_count(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "namespaces.toml"
    path.write_text((ROOT / "herald_contract" / DEFAULT_FILE).read_text() + FEED)
    async with running_qa(settings.replace(namespaces_file=str(path))) as qa:
        counts = await published_by_namespace(qa)
    assert counts == dict.fromkeys([*default_namespaces().kinds, "feed"], 0.0)
