"""Feishu's webhook mode: signed, encrypted requests accepted once; forged or broken ones refused."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.platforms.feishu_webhook import PATH
from tests.feishu_rig import FeishuRig, card_text
from tests.harness import EMMA, HR


@pytest.fixture
async def feishu(db_url: str) -> AsyncIterator[FeishuRig]:
    rig = await FeishuRig(db_url, connection="webhook").start()
    yield rig
    await rig.close()


async def _post(rig: FeishuRig, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, object]]:
    assert rig.app is not None
    address = rig.app.platforms["feishu"].http_address  # type: ignore[attr-defined]
    assert address is not None
    host, port = address
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://{host}:{port}{PATH}", data=body, headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)


async def test_a_signed_encrypted_event_is_handled_and_a_repeat_is_a_no_op(feishu: FeishuRig) -> None:
    event_type, event = feishu.fake.text_event(feishu.users[HR], "help")
    headers, body = feishu.fake.webhook_body(event_type, event, event_id="ev-webhook-1")
    status, answer = await _post(feishu, headers, body)
    assert status == 200, answer
    # Feishu re-pushes a request it got no 200 for in time: the same event id again
    status, _ = await _post(feishu, headers, body)
    assert status == 200
    await feishu.settle(1)
    (reply,) = feishu.fake.messages_to(feishu.users[HR])
    assert "周期 开始" in card_text(reply.content)  # HR's help, in HR's language
    assert await feishu.rows("select count(*) from inboundevent") == [(1,)]


async def test_the_url_verification_challenge_is_answered(feishu: FeishuRig) -> None:
    headers, body = feishu.fake.url_verification_body("chal-123")
    status, answer = await _post(feishu, headers, body)
    assert (status, answer) == (200, {"challenge": "chal-123"})


async def test_a_wrong_verification_token_is_refused_and_nothing_is_stored(feishu: FeishuRig) -> None:
    event_type, event = feishu.fake.text_event(feishu.users[HR], "help")
    headers, body = feishu.fake.webhook_body(event_type, event, token="forged-token")
    status, answer = await _post(feishu, headers, body)
    assert status == 401 and "token" in str(answer["msg"])
    assert await feishu.rows("select count(*) from inboundevent") == [(0,)]


async def test_a_bad_signature_is_refused(feishu: FeishuRig) -> None:
    event_type, event = feishu.fake.text_event(feishu.users[HR], "help")
    headers, body = feishu.fake.webhook_body(event_type, event)
    headers["X-Lark-Signature"] = "0" * 64
    status, answer = await _post(feishu, headers, body)
    assert status == 401 and "signature" in str(answer["msg"])
    assert await feishu.rows("select count(*) from inboundevent") == [(0,)]


async def test_an_undecryptable_body_is_refused(feishu: FeishuRig) -> None:
    garbage = json.dumps({"encrypt": base64.b64encode(b"0123456789abcdef" * 3).decode()}).encode()
    event_type, event = feishu.fake.text_event(feishu.users[HR], "help")
    headers, _ = feishu.fake.webhook_body(event_type, event)
    status, answer = await _post(feishu, headers, garbage)
    assert status in (400, 401), answer
    not_json = b"<html>not json</html>"
    status, _ = await _post(feishu, headers, not_json)
    assert status in (400, 401)
    assert await feishu.rows("select count(*) from inboundevent") == [(0,)]


async def test_a_card_click_over_the_webhook_gets_its_toast_in_the_answer(feishu: FeishuRig) -> None:
    headers, body = feishu.fake.webhook_body(
        *feishu.fake.text_event(feishu.users[HR], f"cycle start weekly --people {EMMA}")
    )
    assert (await _post(feishu, headers, body))[0] == 200
    await feishu.settle(1)
    question = feishu.fake.messages_to(feishu.users[EMMA])[-1]
    event_type, event = feishu.fake.card_action_event(
        feishu.users[EMMA], {"a": "v1|999999|nope|0|x"}, open_message_id=question.message_id
    )
    headers, body = feishu.fake.webhook_body(event_type, event)
    status, answer = await _post(feishu, headers, body)
    assert status == 200 and answer["toast"]["type"] == "success"  # type: ignore[index]
    await feishu.settle(2)
    # a click on a button Cadence did not make for this assignment changes nothing
    assert await feishu.stored(EMMA) == {}
