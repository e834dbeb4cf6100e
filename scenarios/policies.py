"""Delivery policies: whether, when and over what a planned message goes. One place, one order.

`policy_requests` turns messages about to be dispatched (event intake and reminders firing, both
through services.deliver_messages) into delivery requests, deciding each (message, channel) in
this order; the first policy that decides ends the walk:

1. critical: a critical rule (importance) or template skips 2 and 3: no preference silences it,
   quiet hours do not hold it.
2. preferences (channels/preferences.py): the person's switch for the template's category on the
   channel, over the audience's defaults; marketing needs an opt-in → skipped `opted_out`. The
   inbox copy is a channel like the others: it goes unless the person turned the inbox off.
3. quiet hours: the rule's window, else the audience's, in the hospital's time zone; external
   channels only (not the inbox nor the staff's WeCom group robot). The rule says hold (deferred
   until the window ends) or drop (skipped `quiet_hours`, a message stale by then) or ignore.
4. de-duplication and caps (scenarios/caps.py), per rule and person, atomic in Redis (counters and SET NX; without
   Redis, counted in the database under a transaction-scoped lock on (rule, person)), so
   concurrent events count each other: the same value of the rule's de-duplication
   field within the window → skipped `deduplicated` (all channels: a status `skipped`, reason
   `deduplicated`; not the engine's `deduplicated` status, which is the provider's word); more
   than the cap on an external channel within the window → skipped `capped`, and, if the rule
   names a summary template, counted into one summary message due at the window's end.
5. fallback chain: of the rule's chain channels only the first is created now; the chain scan
   (`chains_advance`) creates the next when the previous ended for good for this person.
6. provider failover happens below, at send time (channels/routing.py).
"""

import logging
from datetime import datetime, time, timedelta
from time import monotonic as time_now
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from channels.models import Channel, Delivery, DeliveryStatus
from channels.preferences import allows, preference_defaults, preferences_for
from channels.services import DeliveryRequest, deliveries_create

from .caps import Counts, RedisCounts, lock
from .catalog import MAX_AGE, VERSION_KEY, bindings_for
from .models import AudiencePolicy, ChannelBinding, Importance, Message, QuietHours


class RuleMessage:
    """What the policies (and caps.py, and the deliveries) read of a message besides its own
    fields, from its `rule` and `recipient`: for the light messages that stand in for a Message
    where making one per row would cost most of the work (intake's new messages, the expansion's
    claimed ones)."""

    __slots__ = ()

    @property
    def rule_id(self) -> int:
        return self.rule.pk

    @property
    def template(self):
        return self.rule.template

    @property
    def template_id(self) -> int:
        return self.rule.template_id

    @property
    def recipient_id(self) -> int:
        return self.recipient.pk

    @property
    def audience(self) -> str:
        return self.rule.audience


logger = logging.getLogger(__name__)

# Sends that reach a person's phone; the inbox waits quietly, and a staff group robot is not a person.
QUIET_CHANNELS = {
    Channel.SMS,
    Channel.APP_PUSH,
    Channel.WECHAT_MINI_SUBSCRIBE,
    Channel.WECHAT_OA_TEMPLATE,
    Channel.WECOM_APP,
}
CAPPED_CHANNELS = QUIET_CHANNELS
# A chain moves on when the previous channel ended for good for this person: failed, undelivered
# (a receipt said so), or skipped because there is no way to reach them there. Not on `unknown`:
# it may have reached the person.
CHAIN_MOVES_ON = {"no_address", "no_consent", "opted_out", "channel_not_implemented"}

_settings_cache: dict = {}


def _policy_settings(version: int | None = None):
    """Audience quiet hours and preference defaults, reloaded when the catalog version moves
    (`version`: as the caller read it, else read here)."""
    if version is None:
        version = cache.get(VERSION_KEY, 0)
    fresh = time_now() - _settings_cache.get("at", -MAX_AGE) < MAX_AGE
    if _settings_cache.get("version") != version or not fresh:
        _settings_cache.update(
            version=version,
            at=time_now(),
            quiet={p.audience: p for p in AudiencePolicy.objects.all()},
            defaults=preference_defaults(),
        )
    return _settings_cache["quiet"], _settings_cache["defaults"]


def hospital_zone() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


def quiet_until(now: datetime, start: time | None, end: time | None, tz: ZoneInfo) -> datetime | None:
    """The end of the quiet window `now` falls in (wall-clock start-end in `tz`, may cross
    midnight), or None outside it. 08:00 is 08:00 local on either side of a DST change."""
    if start is None or end is None or start == end:
        return None
    local = now.astimezone(tz)
    at = local.time()
    if start < end:
        inside, end_day = start <= at < end, local.date()
    else:
        inside = at >= start or at < end
        end_day = local.date() + timedelta(days=1) if at >= start else local.date()
    if not inside:
        return None
    return datetime.combine(end_day, end).replace(tzinfo=tz)


def _is_critical(message: Message) -> bool:
    return message.template.critical or (message.rule is not None and message.rule.importance == Importance.CRITICAL)


def _request(message: Message, binding: ChannelBinding, *, contents: dict | None = None, **extra) -> DeliveryRequest:
    """`contents`: the contents made so far, by (rendered message, channel): messages rendered
    once for many people (a batch's) share one content, written as one JSON text."""
    rendered = message.rendered
    key = (id(rendered), binding.channel)
    content = contents.get(key) if contents is not None else None
    if content is None:
        content = {
            "title": rendered["title"],
            "body": rendered["body"],
            "category": rendered["category"],
            "link": rendered["link"],
            "actions": rendered.get("actions", []),
            **rendered["channels"].get(binding.channel, {}),
        }
        if contents is not None:
            contents[key] = content
    return DeliveryRequest(
        channel=binding.channel,
        recipient=message.recipient,
        content=content,
        idempotency_key=f"m{message.pk}:{binding.channel}",
        event_ref=message.event_id,
        message_ref=message.pk,
        template_code=message.template.code,
        account=binding.account,
        **extra,
    )


def _decide(message, binding, *, now, preferences, defaults, quiet, counts, duplicate) -> dict:
    """Steps 1-4 for one message on one channel: {} to send now, else status/reason/not_before.
    A message held by quiet hours still counts against (and can be stopped by) the caps, so the
    window's end is not a flood."""
    rule, channel = message.rule, binding.channel
    held = {}
    if not _is_critical(message):
        category = message.rendered.get("category") or message.template.category
        opt_in = rule is not None and rule.importance == Importance.MARKETING
        if not allows(
            preferences.get(message.recipient_id),
            defaults.get(message.audience),
            channel=channel,
            category=category,
            opt_in=opt_in,
        ):
            return {"status": DeliveryStatus.SKIPPED, "reason": "opted_out"}
        mode = rule.quiet_hours if rule is not None else QuietHours.HOLD
        if channel in QUIET_CHANNELS and mode != QuietHours.IGNORE:
            if rule is not None and rule.quiet_start is not None:
                start, end = rule.quiet_start, rule.quiet_end
            else:
                policy = quiet.get(message.audience)
                start, end = (policy.quiet_start, policy.quiet_end) if policy else (None, None)
            until = quiet_until(now, start, end, hospital_zone())
            if until is not None:
                if mode == QuietHours.DROP:
                    return {"status": DeliveryStatus.SKIPPED, "reason": "quiet_hours"}
                held = {"status": DeliveryStatus.DEFERRED, "reason": "quiet_hours", "not_before": until}
    if duplicate:
        return {"status": DeliveryStatus.SKIPPED, "reason": "deduplicated"}
    capped = rule is not None and rule.cap_count is not None and channel in CAPPED_CHANNELS and counts is not None
    if capped and counts.over_cap(message, rule, channel):
        if rule.collapse_template_id:
            counts.collapse(message, rule)
        return {"status": DeliveryStatus.SKIPPED, "reason": "capped"}
    return held


def policy_requests(
    messages: list[Message],
    *,
    bindings: dict[int, tuple[ChannelBinding, ...]],
    now: datetime | None = None,
    version: int | None = None,
) -> list[DeliveryRequest]:
    """The delivery requests for messages being dispatched, with every policy applied (see the
    module's docstring for the order). Runs in the caller's transaction."""
    if not messages:
        return []
    now = now or timezone.now()
    quiet, defaults = _policy_settings(version)
    preferences = preferences_for(m.recipient_id for m in messages)
    limited = [m for m in messages if m.rule is not None and (m.rule.cap_count is not None or m.rule.dedup_field)]
    counts = None
    if limited:
        if settings.REDIS_URL:
            counts = RedisCounts(now, [m.pk for m in messages])
        else:  # the embedded single-process setup: counted in the database, under a lock
            lock({(m.rule_id, m.recipient_id) for m in limited})
            counts = Counts(now, [m.pk for m in messages])
    requests, chained = [], []
    contents: dict = {}  # the messages' rendered dicts are alive as long as this: ids stay theirs
    for message in messages:
        rule = message.rule
        duplicate = bool(rule and rule.dedup_field and counts.duplicate(message, rule))
        chain = list(rule.fallback_chain or []) if rule is not None else []
        own = bindings.get(message.template_id, ())
        first_link = next((c for c in chain if any(b.channel == c for b in own)), None)
        for binding in own:
            if binding.channel in chain and binding.channel != first_link:
                continue  # a later link: created by the chain scan if the earlier ones end for good
            decision = _decide(
                message,
                binding,
                now=now,
                preferences=preferences,
                defaults=defaults,
                quiet=quiet,
                counts=counts,
                duplicate=duplicate,
            )
            requests.append(_request(message, binding, contents=contents, **decision))
        if first_link is not None and not duplicate and len([c for c in chain if any(b.channel == c for b in own)]) > 1:
            chained.append(message.pk)
    if chained:
        Message.objects.filter(pk__in=chained).update(chain_pending=True)
    return requests


def chains_advance(*, now: datetime | None = None, limit: int = 500) -> int:
    """The fallback-chain scan: for each message with a chain still pending, look at its latest
    chain delivery. Delivered or sent (or anything that may have reached the person, `unknown`
    included): the chain ends. Ended for good for this person (failed; skipped for no address, no
    consent, opted out): the next channel's delivery is created, through the same policies.
    Still on its way (queued, sending, deferred, unknown being reconciled): wait. Returns how many
    next links were created."""
    now = now or timezone.now()
    created = 0
    with transaction.atomic():
        pending = list(
            Message.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(chain_pending=True)
            .select_related("rule", "template", "recipient", "event")
            .order_by("pk")[:limit]
        )
        if not pending:
            return 0
        deliveries: dict[int, list[Delivery]] = {}
        for d in Delivery.objects.filter(message_ref__in=[m.pk for m in pending]).only(
            "message_ref", "channel", "status", "last_error_code", "finished_at"
        ):
            deliveries.setdefault(d.message_ref, []).append(d)
        bindings = bindings_for({m.template_id for m in pending})
        quiet, defaults = _policy_settings()
        preferences = preferences_for(m.recipient_id for m in pending)
        done, requests = [], []
        for message in pending:
            own = {b.channel: b for b in bindings.get(message.template_id, ())}
            chain = [c for c in (message.rule.fallback_chain if message.rule else []) if c in own]
            by_channel = {d.channel: d for d in deliveries.get(message.pk, [])}
            tried = [c for c in chain if c in by_channel]
            if not tried:
                done.append(message.pk)
                continue
            last = by_channel[tried[-1]]
            # Undelivered: the carrier or app said it never reached the person, for good.
            ended = (DeliveryStatus.FAILED, DeliveryStatus.UNDELIVERED, DeliveryStatus.SKIPPED)
            if last.status not in ended or last.finished_at is None:
                if last.status in (DeliveryStatus.QUEUED, DeliveryStatus.SENDING, DeliveryStatus.DEFERRED) or (
                    last.status == DeliveryStatus.UNKNOWN and last.finished_at is None
                ):
                    continue  # still on its way
                done.append(message.pk)  # it reached the person, or may have: the chain ends
                continue
            if last.status == DeliveryStatus.SKIPPED and last.last_error_code not in CHAIN_MOVES_ON:
                done.append(message.pk)  # quiet hours, a cap, a duplicate: the next channel would be no better
                continue
            rest = chain[chain.index(tried[-1]) + 1 :]
            if not rest:
                done.append(message.pk)
                continue
            decision = _decide(
                message,
                own[rest[0]],
                now=now,
                preferences=preferences,
                defaults=defaults,
                quiet=quiet,
                counts=None,
                duplicate=False,
            )
            requests.append(_request(message, own[rest[0]], **decision))
            if len(rest) == 1:
                done.append(message.pk)
        if requests:
            deliveries_create(requests=requests)
            created = len(requests)
        if done:
            Message.objects.filter(pk__in=done).update(chain_pending=False)
    return created
