"""Image attachments (qasite/api/routes/attachments.py)."""

from __future__ import annotations

import hashlib
import io

from PIL import Image

from tests.qasite.support import QA, error_of, png_bytes


async def test_an_image_is_stored_and_served_with_its_headers(qa: QA) -> None:
    user = await qa.signup()
    q = await qa.ask(user)
    data = png_bytes(5, 4)
    r = await qa.client.post(
        f"/api/questions/{q['id']}/attachments",
        content=data,
        headers=user.headers | {"Content-Type": "text/plain"},
    )
    assert r.status_code == 201, r.text
    meta = r.json()
    assert (meta["content_type"], meta["width"], meta["height"]) == ("image/png", 5, 4)
    assert meta["size_bytes"] == len(data)
    served = await qa.client.get(meta["url"])
    assert served.status_code == 200
    assert served.content == data
    assert served.headers["content-type"] == "image/png"
    assert served.headers["content-length"] == str(len(data))
    assert served.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert served.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert served.headers["x-content-type-options"] == "nosniff"
    page = (await qa.client.get(f"/api/questions/{q['id']}")).json()
    assert [a["id"] for a in page["attachments"]] == [meta["id"]]


async def test_an_answer_takes_attachments_from_its_author_only(qa: QA) -> None:
    asker, answerer = await qa.signup(), await qa.signup()
    q = await qa.ask(asker)
    a = await qa.answer(answerer, q["id"])
    path = f"/api/answers/{a['id']}/attachments"
    assert (
        await qa.client.post(path, content=png_bytes(), headers=asker.headers)
    ).status_code == 403
    r = await qa.client.post(path, content=png_bytes(), headers=answerer.headers)
    assert r.status_code == 201
    page = (await qa.client.get(f"/api/questions/{q['id']}")).json()
    assert page["answers"][0]["attachments"][0]["id"] == r.json()["id"]


async def test_bytes_that_are_not_an_image_are_refused_whatever_the_content_type(qa: QA) -> None:
    user = await qa.signup()
    q = await qa.ask(user)
    path = f"/api/questions/{q['id']}/attachments"
    for data in (
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        b"GIF89a garbage",
        b"\x89PNG\r\n\x1a\n",
    ):
        r = await qa.client.post(
            path, content=data, headers=user.headers | {"Content-Type": "image/png"}
        )
        assert r.status_code == 415, data
        assert error_of(r)["reason"] == "unsupported_media_type"
    r = await qa.client.post(path, content=b"", headers=user.headers)
    assert r.status_code == 422


async def test_an_image_over_the_limit_is_413(qa: QA) -> None:
    user = await qa.signup()
    q = await qa.ask(user)
    big = png_bytes(300, 300, noise=True)
    assert len(big) > qa.context.settings.max_attachment_bytes
    r = await qa.client.post(
        f"/api/questions/{q['id']}/attachments", content=big, headers=user.headers
    )
    assert r.status_code == 413
    assert error_of(r)["reason"] == "too_large"

    async def chunks():  # no Content-Length: the limit applies while reading
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]

    r = await qa.client.post(
        f"/api/questions/{q['id']}/attachments", content=chunks(), headers=user.headers
    )
    assert r.status_code == 413


async def test_attachments_need_the_posts_owner_and_a_real_post(qa: QA) -> None:
    owner, other = await qa.signup(), await qa.signup()
    q = await qa.ask(owner)
    path = f"/api/questions/{q['id']}/attachments"
    assert (await qa.client.post(path, content=png_bytes())).status_code == 401
    assert (
        await qa.client.post(path, content=png_bytes(), headers=other.headers)
    ).status_code == 403
    r = await qa.client.post(
        "/api/questions/999/attachments", content=png_bytes(), headers=owner.headers
    )
    assert r.status_code == 404
    assert (await qa.client.get("/api/attachments/999")).status_code == 404


async def test_deleting_a_post_removes_its_files(qa: QA) -> None:
    asker, answerer = await qa.signup(), await qa.signup()
    q = await qa.ask(asker)
    a = await qa.answer(answerer, q["id"])
    on_question = await qa.client.post(
        f"/api/questions/{q['id']}/attachments", content=png_bytes(), headers=asker.headers
    )
    on_answer = await qa.client.post(
        f"/api/answers/{a['id']}/attachments", content=png_bytes(2, 2), headers=answerer.headers
    )
    files = sorted(p.name for p in qa.context.images.directory.iterdir())
    assert len(files) == 2
    await qa.client.delete(f"/api/answers/{a['id']}", headers=answerer.headers)
    assert (await qa.client.get(on_answer.json()["url"])).status_code == 404
    assert len(list(qa.context.images.directory.iterdir())) == 1
    await qa.client.delete(f"/api/questions/{q['id']}", headers=asker.headers)
    assert (await qa.client.get(on_question.json()["url"])).status_code == 404
    assert list(qa.context.images.directory.iterdir()) == []


async def test_a_decompression_bomb_is_413_and_counted(qa: QA) -> None:
    user = await qa.signup()
    q = await qa.ask(user)
    out = io.BytesIO()
    Image.new("1", (6300, 6300)).save(out, format="PNG", optimize=True)
    r = await qa.client.post(
        f"/api/questions/{q['id']}/attachments", content=out.getvalue(), headers=user.headers
    )
    assert r.status_code == 413, r.text
    assert error_of(r)["reason"] == "too_large"
    assert "pixels" in error_of(r)["message"]
    metrics = (await qa.client.get("/metrics")).text
    assert 'herald_qa_uploads_refused_total{reason="too_many_pixels"} 1.0' in metrics
