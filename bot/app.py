"""The composition root: settings → database, rituals, engine, router, delivery and platforms."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from datetime import timedelta
from functools import partial

from aiohttp import web

from bot.delivery import Delivery
from bot.forms import FormService
from bot.health import Metrics, add_health_routes, start_health
from bot.llm import build_topic_rewriter
from bot.platforms.base import IncomingEvent, Platform
from bot.rate_limits import RateLimiter
from bot.router import Router
from bot.settings import Settings
from bot.task_links import add_callback_route
from bot.task_sources import build_task_sources, intervals
from conversations import agenda
from conversations.agenda import AgendaSettings
from conversations.engine import Engine
from conversations.quality_sampling import monthly_sampling_due
from conversations.ritual_loader import load_catalog
from conversations.task_sources import TaskSources
from scheduler.calendars import QuietHours
from scheduler.leader import Leadership
from scheduler.one_on_ones import OneOnOneConfig, OneOnOnes
from scheduler.planner import Planner
from scheduler.reminders import Policy, Reminders
from scheduler.runner import SchedulerService
from scheduler.schedules import load_schedules
from scheduler.starter import Starter
from scheduler.sync_jobs import ScheduledSource, SyncJobs
from scheduler.timing import PersonTiming
from storage.clock import utcnow
from storage.engine import Database
from storage.migrate import upgrade

log = logging.getLogger(__name__)
SQLITE_SENDERS = 4


class App:
    """One Cadence process: built here and nowhere else."""

    def __init__(self, settings: Settings, *, platforms: dict[str, Platform]) -> None:
        self.settings = settings
        self.db = Database(settings.database_url)
        self.catalog = load_catalog(settings.rituals_dir)
        self.schedules = load_schedules(settings.scheduler.file, catalog=self.catalog)
        quiet = settings.quiet
        self.timing = PersonTiming(
            quiet=QuietHours(start=quiet.start, end=quiet.end, enabled=quiet.enabled),
            company_days_off=self.schedules.days_off,
        )
        # task sources (Jira, Feishu tasks, DingTalk todos): synced on the scheduler, shown in rituals
        self.task_sources = build_task_sources(settings, self.db)
        self.engine = Engine(
            self.catalog,
            snooze_minutes=settings.snooze_minutes,
            timing=self.timing,
            tasks=TaskSources(
                enabled=tuple(settings.enabled_task_sources()), auth_links=self.task_sources.feishu_links
            ),
        )
        self.agenda_settings = AgendaSettings(
            stuck_days=settings.agenda_stuck_days, meeting_time=settings.one_on_one_at
        )
        agenda.configure(self.engine, self.agenda_settings)
        llm = settings.llm
        self.topic_rewriter = build_topic_rewriter(
            base_url=llm.base_url, model=llm.model, api_key=llm.api_key, timeout=llm.timeout_seconds
        )
        self.router = Router(
            self.db,
            self.engine,
            default_locale=settings.default_locale,
            max_message_chars=settings.max_message_chars,
        )
        self.platforms = platforms
        forms = FormService(self.db, self.engine)
        self.metrics = Metrics()
        for platform in platforms.values():
            platform.forms, platform.metrics = forms, self.metrics
            platform.extra_routes = self.add_routes
        chat = (("slack", settings.slack), ("feishu", settings.feishu), ("dingtalk", settings.dingtalk))
        limiter = RateLimiter(
            per_platform={name: section.rate_per_s for name, section in chat},
            per_recipient={name: section.per_recipient_per_s for name, section in chat},
            # the same clock as the outbox's due times, so a Retry-After pause and the row's retry
            # time end together (and tests that move the clock move both)
            clock=lambda: utcnow().timestamp(),
        )
        self.delivery = Delivery(
            self.db,
            platforms,
            limiter=limiter,
            concurrency=self._delivery_concurrency(settings),
            metrics=self.metrics,
            lease=timedelta(seconds=settings.delivery_lease_seconds),
        )
        self.scheduler = self._scheduler(settings)

    def add_routes(self, web_app: web.Application) -> web.Application:
        """Health, metrics and (with Feishu tasks) the authorisation callback, on whichever server."""
        add_health_routes(web_app, self.db, self.metrics)
        return self.add_task_routes(web_app)

    def add_task_routes(self, web_app: web.Application) -> web.Application:
        if self.task_sources.feishu_links is not None:
            add_callback_route(web_app, self.task_sources.feishu_links)
        return web_app

    def _scheduler(self, settings: Settings) -> SchedulerService:
        # scheduled prompts go to the first platform switched on (one platform per deployment today)
        platform = next(iter(self.platforms), "console")
        config = settings.scheduler
        planner = Planner(
            self.db, self.catalog, self.schedules, self.timing, company_timezone=settings.default_timezone
        )
        default = Policy(after=timedelta(hours=config.reminder_after_hours), max=config.reminder_max)
        return SchedulerService(
            leadership=Leadership(self.db, check_every=config.leader_check_seconds),
            planner=planner,
            starter=Starter(self.db, self.engine, self.timing, platform=platform),
            reminders=Reminders(self.db, self.catalog, self.timing, platform=platform, default=default),
            tick_seconds=config.tick_seconds,
            on_queued=self.delivery.kick,
            sync=self._sync_jobs(settings),
            one_on_ones=self._one_on_ones(settings, platform),
            quality_sampling=partial(
                monthly_sampling_due,
                self.db,
                seed=settings.quality_sample_seed,
                share=settings.quality_sample_share,
                company_timezone=settings.default_timezone,
                platform=platform,
                timing=self.timing,
                is_workday=self.timing.calendar(settings.company_country).is_workday,
            ),
        )

    def _one_on_ones(self, settings: Settings, platform: str) -> OneOnOnes | None:
        if not settings.one_on_one_enabled:
            return None
        config = OneOnOneConfig(
            every_days=settings.one_on_one_every_days,
            every_days_by_department=settings.one_on_one_every_days_by_department,
            lead_hours=settings.one_on_one_lead_hours,
            at=settings.one_on_one_at,
            agenda=self.agenda_settings,
        )
        return OneOnOnes(
            self.db,
            self.timing,
            platform=platform,
            sources=settings.enabled_task_sources(),
            config=config,
            rewriter=self.topic_rewriter,
        )

    def _sync_jobs(self, settings: Settings) -> SyncJobs | None:
        connectors = self.task_sources.connectors
        if not connectors:
            return None
        every = intervals(settings)
        return SyncJobs(self.db, {name: ScheduledSource(c, every[name]) for name, c in connectors.items()})

    def _delivery_concurrency(self, settings: Settings) -> int:
        # SQLite has one connection: more senders only queue on it, ahead of the journal writes that
        # platforms wait on for their acknowledgement (measured: 16 senders tripled the ack p99)
        wanted = settings.delivery_concurrency
        if self.db.backend == "sqlite":
            wanted = min(SQLITE_SENDERS, wanted)
        # a platform that sends identical messages to many people in one call (DingTalk: 20) needs
        # that many sends in hand at once to fill a call, per distinct message (a prompt goes out in
        # two languages: the fan-out benchmark filled calls half with 20); they wait on the platform
        batching = max((getattr(p, "batch_limit", 1) for p in self.platforms.values()), default=1)
        return max(wanted, batching * 2 if batching > 1 else 1)

    async def start(self) -> None:
        """Migrate, finish what a crash left half-done, then connect the platforms."""
        applied = await upgrade(self.db.engine)
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
        replayed = await self.router.replay_unprocessed()
        if replayed:
            log.warning("replayed %d events journaled before a crash", replayed)
        for platform in self.platforms.values():
            await platform.start(self.on_event)

    async def on_event(
        self, event: IncomingEvent, *, acknowledge: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """Every platform hands its events here; ``acknowledge`` runs once the event is journaled."""
        await self.router.receive(event, acknowledge=acknowledge)
        self.delivery.kick()

    async def stop(self) -> None:
        """Disconnect and close the database."""
        await self.scheduler.stop()
        for platform in self.platforms.values():
            await platform.stop()
        await self.task_sources.close()
        if self.topic_rewriter is not None:
            await self.topic_rewriter.close()
        await self.db.dispose()


def platforms_from(settings: Settings) -> dict[str, Platform]:
    """The chat platforms the settings enable (SDKs are imported only for those)."""
    built: dict[str, Platform] = {}
    if settings.slack.enabled:
        from bot.platforms.slack import SlackPlatform

        built["slack"] = SlackPlatform(
            settings.slack, http_host=settings.http_host, http_port=settings.http_port
        )
    if settings.feishu.enabled:
        from bot.platforms.feishu import FeishuPlatform

        built["feishu"] = FeishuPlatform(
            settings.feishu, http_host=settings.http_host, http_port=settings.http_port
        )
    if settings.dingtalk.enabled:
        from bot.platforms.dingtalk import DingtalkPlatform

        built["dingtalk"] = DingtalkPlatform(settings.dingtalk)
    return built


async def serve(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """``cadence run`` with platforms: connect, deliver until stopped (SIGINT/SIGTERM), disconnect."""
    app = App(settings, platforms=platforms_from(settings))
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal_number, stop.set)
    await app.start()
    if settings.scheduler.enabled:
        app.scheduler.start()
    # Slack's HTTP mode and Feishu's webhook mode already serve the port (with these routes added);
    # otherwise serve them here
    serving_http = any(getattr(p, "http_address", None) for p in app.platforms.values())
    health = None
    if not serving_http:
        health = await start_health(
            app.db,
            app.metrics,
            host=settings.http_host,
            port=settings.http_port,
            more_routes=app.add_task_routes,
        )
    try:
        await app.delivery.run(stop)
    finally:
        if health is not None:
            await health.cleanup()
        await app.stop()
