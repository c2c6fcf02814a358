"""The Feishu adapter's parts against the fake over real sockets: token, errors, cards, text."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from bot.platforms.base import SendError
from bot.platforms.feishu import FeishuPlatform, message_uuid, text_of
from bot.platforms.feishu_api import FeishuApi, FeishuApiError
from bot.platforms.feishu_cards import CARD_LIMIT, card, content, form_answers
from bot.settings import FeishuSettings
from conversations.messages import Action, Button, Field_, Message, Tone
from tests.fakes.feishu import FeishuFake
from tests.feishu_rig import card_buttons, card_text, feishu_settings


@pytest.fixture
async def fake() -> AsyncIterator[FeishuFake]:
    async with FeishuFake(app_id="cli_platform_parts") as running:
        running.add_user("ou_ada", name="Ada", email="ada@example.com")
        yield running


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_tenant_token_is_reused_then_refreshed_ten_minutes_before_it_ends(fake: FeishuFake) -> None:
    clock = _Clock()
    api = FeishuApi(fake.url, app_id=fake.app_id, app_secret=fake.app_secret, clock=clock)
    try:
        first = await api.token()
        assert await api.token() == first and fake.token_requests == 1
        clock.now += 7200 - 600 - 1  # the fake's tokens live 7,200 s
        assert await api.token() == first and fake.token_requests == 1
        clock.now += 2
        assert await api.token() != first and fake.token_requests == 2
    finally:
        await api.close()


async def test_a_wrong_app_secret_is_an_error_naming_feishus_code(fake: FeishuFake) -> None:
    api = FeishuApi(fake.url, app_id=fake.app_id, app_secret="not-the-secret")
    try:
        with pytest.raises(FeishuApiError) as caught:
            await api.token()
        assert caught.value.code == 10014
    finally:
        await api.close()


@pytest.mark.parametrize(
    ("code", "status", "retry", "permanent"),
    [
        (99991400, 429, True, False),  # the app's limit
        (230020, 400, True, False),  # this person's 5 a second
        (230013, 400, False, True),  # outside the app's availability range
        (230053, 400, False, True),  # the person stopped the bot
    ],
)
async def test_feishu_refusals_become_retries_or_permanent_failures(
    fake: FeishuFake, code: int, status: int, retry: bool, permanent: bool
) -> None:
    platform = FeishuPlatform(feishu_settings(fake))
    fake.fail("/open-apis/im/v1/messages", code=code, status=status)
    try:
        with pytest.raises(SendError) as caught:
            await platform.send("ou_ada", Message(text="hello"), key="k1")
        assert (caught.value.retry_after is not None) is retry
        assert caught.value.permanent is permanent
        assert fake.messages_to("ou_ada") == []
        # the next try goes through, once, with the same uuid
        await platform.send("ou_ada", Message(text="hello"), key="k1")
        assert fake.delivered_uuids() == {"k1": 1}
    finally:
        await platform.api.close()


async def test_a_send_repeated_with_the_same_key_is_one_message(fake: FeishuFake) -> None:
    platform = FeishuPlatform(feishu_settings(fake))
    long_key = "cycle:12:assignment:345:step:highlights:prompt:" + "x" * 80
    try:
        first = await platform.send("ou_ada", Message(text="hello"), key=long_key)
        again = await platform.send("ou_ada", Message(text="hello"), key=long_key)
        assert first == again and len(fake.messages_to("ou_ada")) == 1
        assert len(message_uuid(long_key)) <= 50
        assert fake.messages_to("ou_ada")[0].uuid == message_uuid(long_key)
    finally:
        await platform.api.close()


async def test_an_update_replaces_the_card_and_lookup_finds_people_by_email(fake: FeishuFake) -> None:
    platform = FeishuPlatform(feishu_settings(fake))
    action = Action(assignment_id=1, step="s", version=0, value="4")
    try:
        message_id = await platform.send(
            "ou_ada", Message(text="Rate it", buttons=(Button(label="4 · Good", action=action),)), key="k2"
        )
        await platform.update("ou_ada", message_id, Message(text="Saved: 4", tone=Tone.SUCCESS), key="k2")
        (shown,) = fake.message(message_id).updates
        assert "Saved: 4" in card_text(shown) and card_buttons(shown) == []
        assert await platform.lookup("ada@example.com") == "ou_ada"
        assert await platform.lookup("nobody@example.com") is None
    finally:
        await platform.api.close()


def test_a_card_carries_buttons_with_their_actions_and_person_text_is_not_markdown() -> None:
    action = Action(assignment_id=7, step="rating", version=3, value="5")
    message = Message(
        title="Weekly recap",
        text="**not bold** <at id=all></at>",
        fields=(Field_(label="Saved", value="shipped *v2*"),),
        buttons=(Button(label="5 · Great", action=action, primary=True),),
        hint="Reply with a number",
        tone=Tone.PROMPT,
    )
    rendered = card(message)
    assert rendered["schema"] == "2.0" and rendered["config"]["update_multi"] is True
    assert rendered["header"]["template"] == "blue"
    assert card_buttons(rendered) == [("5 · Great", {"a": action.encode()})]
    # what the person wrote is plain text; in markdown fields, their asterisks are escaped
    assert rendered["body"]["elements"][0]["text"] == {"tag": "plain_text", "content": message.text}
    assert "&#42;v2&#42;" in rendered["body"]["elements"][1]["content"]


def test_a_card_with_too_much_text_is_cut_to_feishus_30_kb() -> None:
    fields = tuple(Field_(label=f"Answer {i}", value="很长的回答" * 400) for i in range(40))
    rendered = card(Message(title="Review", text="说明" * 5000, fields=fields))
    assert len(content(rendered).encode()) <= CARD_LIMIT
    assert "Answer 0" in card_text(rendered)  # the first answers stay; the last go


def test_text_and_rich_text_messages_are_read_and_other_kinds_are_not() -> None:
    assert text_of("text", json.dumps({"text": "完成了登录模块"})) == "完成了登录模块"
    post = {"title": "本周", "content": [[{"tag": "text", "text": "修复 "}, {"tag": "a", "text": "PROJ-1"}]]}
    assert text_of("post", json.dumps(post)) == "本周\n修复 PROJ-1"
    assert text_of("image", json.dumps({"image_key": "img_x"})) is None
    assert text_of("text", "not json") is None


def test_form_values_become_answers_by_step() -> None:
    assert form_answers({"highlights": "a\nb", "tags": ["x", "y"], "empty": None}) == {
        "highlights": "a\nb",
        "tags": "x\ny",
    }


def test_webhook_mode_needs_the_verification_token() -> None:
    with pytest.raises(ValueError, match="FEISHU_VERIFICATION_TOKEN"):
        FeishuSettings(
            enabled=True, app_id="cli_a1b2", app_secret="a-real-looking-secret", connection="webhook"
        )
    assert FeishuSettings(domain="lark").base_url == "https://open.larksuite.com"
    assert FeishuSettings(domain="Feishu").base_url == "https://open.feishu.cn"
    assert (
        FeishuSettings(domain="https://feishu-proxy.example.com/").base_url
        == "https://feishu-proxy.example.com"
    )
    with pytest.raises(ValueError, match="FEISHU_DOMAIN"):
        FeishuSettings(domain="open.feishu.cn/path")
