"""The scenario catalog as event intake reads it: per process, reloaded when it changes.

Every event needs its scenario, rules, templates, links and bindings; reading them from the
database each time was a third of an event's queries. Each process keeps what it loaded and
reloads a scenario when the catalog version (a counter in the shared cache, bumped on every
save or delete of a catalog row) has moved, and at the latest after MAX_AGE seconds, so an edit
in the admin takes effect within seconds everywhere, even where the cache is per process.
"""

import threading
import time
from dataclasses import dataclass

from django.core.cache import cache
from django.db.models.signals import post_delete, post_save
from redis.exceptions import RedisError

from channels.models import ChannelAccount, PreferenceDefault
from channels.services import accounts_enabled

from .models import AudiencePolicy, ChannelBinding, LinkTarget, Rule, Scenario, Template
from .rendering import text_compile
from .schemas import CompiledSchema, compiled

VERSION_KEY = "nc:catalog-version"
MAX_AGE = 5.0


@dataclass(frozen=True)
class ScenarioConfig:
    scenario: Scenario
    rules: tuple[Rule, ...]
    bindings: dict[int, tuple[ChannelBinding, ...]]
    data_validator: CompiledSchema | None
    conditions: dict[int, CompiledSchema | None]
    cancels: bool  # some enabled rule lists this event in cancel_on
    reschedules: bool  # some enabled rule lists this event in reschedule_on


_loaded: dict[str, tuple[int, float, ScenarioConfig | dict | None]] = {}
ACCOUNTS = " accounts"  # their entry in _loaded: no event name has a space
_lock = threading.Lock()


def catalog_version() -> int:
    """The catalog's version now: one cache read, which a batch of events shares."""
    return cache.get(VERSION_KEY, 0)


def scenario_config(code: str, *, version: int | None = None) -> ScenarioConfig | None:
    """The scenario with this event name and everything intake needs of it, or None."""
    if version is None:
        version = catalog_version()
    entry = _loaded.get(code)
    if entry is not None and entry[0] == version and time.monotonic() - entry[1] < MAX_AGE:
        return entry[2]
    config = _load(code)
    with _lock:
        _loaded[code] = (version, time.monotonic(), config)
    return config


def channel_accounts(*, version: int | None = None) -> dict[str, list[ChannelAccount]]:
    """The enabled channel accounts by channel, as deliveries_create routes new deliveries over
    them; kept per process like a scenario (an account's save bumps the catalog version). Its
    circuit lives in the cache (channels/routing.py), not on the row, so a kept row is not stale."""
    if version is None:
        version = catalog_version()
    entry = _loaded.get(ACCOUNTS)
    if entry is not None and entry[0] == version and time.monotonic() - entry[1] < MAX_AGE:
        return entry[2]
    accounts = accounts_enabled()
    with _lock:
        _loaded[ACCOUNTS] = (version, time.monotonic(), accounts)
    return accounts


def catalog_warm() -> int:
    """Load every scenario and the channel accounts, and compile what their messages render, as a
    new process's first events would one by one (notifycenter/warmup.py). The compiled schemas
    and templates are kept by their text, so they outlive each reload of the catalog. Returns how
    many scenarios were loaded."""
    version = catalog_version()
    codes = list(Scenario.objects.values_list("code", flat=True))
    for code in codes:
        config = scenario_config(code, version=version)
        for rule in config.rules if config else ():
            template = rule.template
            for text in (template.title, template.body):
                text_compile(text)
            for binding in config.bindings.get(rule.template_id, ()):
                for value in binding.params.values():
                    text_compile(str(value))
    channel_accounts(version=version)
    return len(codes)


def bindings_for(template_ids) -> dict[int, tuple[ChannelBinding, ...]]:
    out: dict[int, list[ChannelBinding]] = {}
    for binding in ChannelBinding.objects.filter(template_id__in=list(template_ids), enabled=True).select_related(
        "account"
    ):
        out.setdefault(binding.template_id, []).append(binding)
    return {k: tuple(v) for k, v in out.items()}


def _load(code: str) -> ScenarioConfig | None:
    scenario = Scenario.objects.filter(code=code).first()
    if scenario is None:
        return None
    rules = tuple(scenario.rules.filter(enabled=True).select_related("template", "template__link").order_by("id"))
    controls = list(Rule.objects.filter(enabled=True).only("cancel_on", "reschedule_on"))
    return ScenarioConfig(
        scenario=scenario,
        rules=rules,
        bindings=bindings_for({r.template_id for r in rules}),
        data_validator=compiled(scenario.data_schema),
        conditions={r.pk: compiled(r.condition) for r in rules},
        cancels=any(code in (r.cancel_on or []) for r in controls),
        reschedules=any(code in (r.reschedule_on or []) for r in controls),
    )


def bump_version(**kwargs) -> None:
    if cache.add(VERSION_KEY, 1, timeout=None):
        return
    try:
        cache.incr(VERSION_KEY)
    except ValueError:  # evicted between add and incr
        cache.add(VERSION_KEY, 1, timeout=None)
    except RedisError:  # the cache is down: every process reloads within MAX_AGE anyway
        pass


for _model in (
    Scenario,
    Rule,
    Template,
    ChannelBinding,
    LinkTarget,
    ChannelAccount,
    AudiencePolicy,
    PreferenceDefault,
):
    post_save.connect(bump_version, sender=_model, dispatch_uid=f"catalog-version-save-{_model.__name__}")
    post_delete.connect(bump_version, sender=_model, dispatch_uid=f"catalog-version-delete-{_model.__name__}")
