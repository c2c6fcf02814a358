"""A Cadence process connected to the DingTalk fake over Stream mode, for end-to-end tests."""

from __future__ import annotations

import itertools
from typing import Any

from bot.settings import DingtalkSettings, Settings
from storage import people
from tests.fakes.dingtalk import DingTalkFake
from tests.platform_rig import PlatformRig, sample_ids

_APPS = itertools.count(1)


def dingtalk_users() -> dict[str, str]:
    """Every sample-org email with a DingTalk userid: the org file's where it has one, else a made-up one."""
    return sample_ids("dingtalk", "u")


def dingtalk_settings(fake: DingTalkFake, **overrides: Any) -> DingtalkSettings:
    """The DingTalk adapter pointed at the fake (both of its APIs)."""
    values: dict[str, Any] = {
        "enabled": True,
        "client_id": fake.client_id,
        "client_secret": fake.client_secret,
        "robot_code": fake.robot_code,
        "api_url": fake.url,
        "oapi_url": fake.url,
    }
    return DingtalkSettings(**(values | overrides))


class DingtalkRig(PlatformRig):
    """Cadence with DingTalk enabled against the fake (Stream mode)."""

    def __init__(self, db_url: str, *, card_template_id: str = "") -> None:
        super().__init__(db_url)
        self.card_template_id = card_template_id
        n = next(_APPS)
        self.fake = DingTalkFake(client_id=f"ding-rig-{n}", robot_code=f"ding-rig-{n}")
        self.users = dingtalk_users()

    def add_users(self) -> None:
        """The sample org's people as DingTalk users, with their emails."""
        for email, userid in self.users.items():
            self.fake.add_user(userid, name=email.split("@")[0], email=email)

    async def start(self, *, import_org: bool = True) -> DingtalkRig:
        """As for every rig, then every person's userid linked (DingTalk has no email lookup: in a
        deployment ``cadence org sync dingtalk`` or the org file's dingtalk ids do this)."""
        await super().start(import_org=import_org)
        if import_org:
            assert self.app is not None
            async with self.app.db.sessions() as session, session.begin():
                for email, userid in self.users.items():
                    person = await people.by_email(session, email=email)
                    assert person is not None
                    await people.remember_identity(
                        session, person_id=person.id, platform="dingtalk", external_id=userid
                    )
        return self

    def platform_settings(self, settings: Settings) -> None:
        """DingTalk on, at the fake (both of its APIs)."""
        settings.dingtalk = dingtalk_settings(self.fake, card_template_id=self.card_template_id)

    def texts_to(self, email: str) -> list[str]:
        """What the person has read, message by message (markdown text, or a card's current markdown)."""
        shown = []
        for message in self.fake.messages_to(self.users[email]):
            content = message.content
            shown.append(str(content.get("text") or content.get("markdown") or content))
        return shown
