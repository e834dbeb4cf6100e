"""Broadcasts to large audiences: one rendered message to a list of ids (up to LIST_MAX) or to a
segment of the recipient directory, written by a task in chunks.

- The template is rendered once, with the broadcast's data: the message is the same for all.
- The inbox part is the inbox row itself (inbox/bulk.py: COPY, ON CONFLICT DO NOTHING on a
  source_key per broadcast and person, counters and live events in the same statement); no
  Event, Message, Delivery or attempt rows for it. Provider channels get one Delivery per person
  in the outbox (bulk), keyed per broadcast, channel and person, and are sent as any other.
- Preferences apply as for events (critical ignores them, marketing needs an opt-in); quiet hours
  hold provider deliveries (deferred), never the inbox.
- Each chunk locks the broadcast row, writes its people and moves `cursor` and the counts in one
  transaction: a worker killed mid-chunk leaves nothing of that chunk, and the next run (the
  resume scan, or a second worker that was waiting on the lock) redoes it whole; a finished chunk
  is never redone. A chunk that fails twice in a row is given up (its people counted `failed`)
  so one bad chunk cannot hold up the rest.
- The list of ids is kept only while it is being written: an ended broadcast (done, cancelled,
  failed) keeps its counts, not the people (personal data kept once: the inbox rows and
  deliveries say who got it).
- Cancelling is a status the next chunk reads under the same lock: it stops within one chunk;
  the provider messages written and not gone out yet are cancelled with it.
"""

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext

from channels.models import Channel, DeliveryStatus, Recipient
from channels.preferences import allows, preference_defaults, preferences_for
from channels.services import DeliveryRequest, address_for, deliveries_cancel_keyed, deliveries_create
from inbox.bulk import inbox_message_put_to_many

from .audiences import directory_entries, external_ids_problems, segment_people
from .catalog import bindings_for
from .errors import EventRejected
from .limits import data_size_problem, rendered_problems, value_problems
from .models import AudiencePolicy, Broadcast, BroadcastSource, BroadcastStatus, Importance, Template
from .policies import QUIET_CHANNELS, hospital_zone, quiet_until
from .rendering import RenderError, render_message
from .services import render_context

logger = logging.getLogger(__name__)

CHUNK = 5000  # people per transaction
STALE_AFTER = timedelta(seconds=60)  # an open broadcast this long without progress is resumed
OPEN = (BroadcastStatus.QUEUED, BroadcastStatus.RUNNING)
GIVE_UP_AFTER = 2  # failures of one chunk in a row before its people are counted failed


class BroadcastRejected(EventRejected):
    """A broadcast that cannot be made as asked; nothing was stored (400, with field paths)."""

    def __init__(self, fields: dict):
        super().__init__("invalid_broadcast", "The broadcast is invalid.", fields)


def _rendered(template: Template, data: dict) -> dict:
    bindings = bindings_for([template.pk]).get(template.pk, ())
    return render_message(template=template, bindings=bindings, context=render_context(template, data))


def broadcast_problems(
    *,
    template: Template | None,
    channels: list,
    data: dict,
    external_ids: list | None,
    segment: bool,
    segment_channel: str = "",
    importance: str = Importance.TRANSACTIONAL,
) -> dict[str, list[str]]:
    """Everything wrong with a broadcast as asked, by field path (empty: it can be made)."""
    problems: dict[str, list[str]] = {}
    if template is None:
        problems["template"] = [gettext("No such template.")]
    elif template.is_verification_code:
        # Its code is made per person by POST /api/v1/otp; a broadcast's delivery fails otp_missing.
        problems["template"] = [gettext("A verification-code template: codes are sent one by one, never broadcast.")]
    if not isinstance(data, dict):
        problems["data"] = [gettext("An object.")]
    else:
        problems.update(value_problems(data, "data"))
        if data_size_problem(data):
            problems["data"] = [data_size_problem(data)]
    if importance not in Importance.values:
        problems["importance"] = [gettext("One of %(values)s.") % {"values": ", ".join(Importance.values)}]
    bound = {b.channel for b in bindings_for([template.pk]).get(template.pk, ())} if template else set()
    if not isinstance(channels, list) or not channels:
        problems["channels"] = [gettext("At least one channel.")]
    else:
        for index, channel in enumerate(channels):
            if channel not in Channel.values:
                problems[f"channels.{index}"] = [
                    gettext("Unknown channel; one of %(values)s.") % {"values": ", ".join(Channel.values)}
                ]
            elif channel != Channel.INBOX and template is not None and channel not in bound:
                problems[f"channels.{index}"] = [
                    gettext("The template has no enabled binding for %(channel)s.") % {"channel": channel}
                ]
    if segment and external_ids:
        problems.setdefault("recipients", []).append(gettext("Either a list of external ids or a segment, not both."))
    elif not segment and not external_ids:
        problems.setdefault("recipients", []).append(gettext("A list of external ids, or a segment, is required."))
    elif not segment:
        problems.update(external_ids_problems(external_ids))
    if segment_channel and segment_channel not in Channel.values:
        problems["segment.channel"] = [gettext("Unknown channel.")]
    if template is not None and not problems:
        try:
            rendered = _rendered(template, data)
        except RenderError as err:
            problems[f"template.{err.field}"] = [err.message]
        else:
            problems.update({f"template.{k}": v for k, v in rendered_problems(rendered).items()})
    return problems


def broadcast_create(
    *,
    name: str,
    template: Template | None,
    channels: list,
    data: dict | None = None,
    external_ids: list | None = None,
    segment: bool = False,
    segment_channel: str = "",
    importance: str = Importance.TRANSACTIONAL,
    created_by: str = "",
    client: str = "",
    idempotency_key: str = "",
) -> tuple[Broadcast, bool]:
    """Check and store a broadcast, and start it after commit. Either `external_ids` (a list) or
    `segment` (the template's audience in the directory, optionally only people with an address on
    `segment_channel`). Returns (broadcast, created); the same client and key again returns the
    first. Raises BroadcastRejected with every problem by field path."""
    if client and idempotency_key:
        first = Broadcast.objects.filter(client=client, idempotency_key=idempotency_key).first()
        if first is not None:
            return first, False
    data = {} if data is None else data
    problems = broadcast_problems(
        template=template,
        channels=channels,
        data=data,
        external_ids=external_ids,
        segment=segment,
        segment_channel=segment_channel,
        importance=importance,
    )
    if problems:
        raise BroadcastRejected(problems)
    ids = list(dict.fromkeys(str(i) for i in external_ids)) if not segment else []
    with transaction.atomic():
        broadcast = Broadcast.objects.create(
            name=name[:100],
            template=template,
            data=data,
            channels=list(dict.fromkeys(channels)),
            importance=importance,
            audience=template.audience,
            source=BroadcastSource.SEGMENT if segment else BroadcastSource.LIST,
            external_ids=ids,
            segment_channel=segment_channel,
            total=len(ids) if not segment else segment_people(template.audience, segment_channel).count(),
            created_by=created_by,
            client=client,
            idempotency_key=idempotency_key,
        )
        transaction.on_commit(lambda: broadcast_enqueue(broadcast_id=broadcast.pk))
    return broadcast, True


def broadcast_enqueue(*, broadcast_id: int) -> None:
    """Hand the broadcast to a worker; a lost enqueue is picked up by the resume scan."""
    from .tasks import run_broadcast

    try:
        run_broadcast.delay(broadcast_id)
    except Exception:
        logger.exception("enqueue of broadcast %s failed; the resume scan will start it", broadcast_id)


@dataclass
class _Plan:
    """What every chunk of one run shares: the message, the policies' inputs, the list."""

    broadcast: Broadcast
    rendered: dict
    bindings: dict
    ids: list[str]
    defaults: dict
    quiet: AudiencePolicy | None

    @property
    def inbox_only(self) -> bool:
        return list(self.broadcast.channels) == [Channel.INBOX]


def _plan(broadcast: Broadcast) -> _Plan:
    template = broadcast.template
    rendered = _rendered(template, broadcast.data)
    return _Plan(
        broadcast=broadcast,
        rendered=rendered,
        bindings={b.channel: b for b in bindings_for([template.pk]).get(template.pk, ())},
        ids=list(broadcast.external_ids) if broadcast.source == BroadcastSource.LIST else [],
        defaults=preference_defaults(),
        quiet=AudiencePolicy.objects.filter(audience=broadcast.audience).first(),
    )


def _next_people(plan: _Plan, cursor: int, size: int) -> tuple[list[tuple[str, Recipient | None]], int]:
    """The next chunk's people as (external id, directory entry or None), and the cursor after it."""
    broadcast = plan.broadcast
    if broadcast.source == BroadcastSource.LIST:
        ids = plan.ids[cursor : cursor + size]
        if not ids:
            return [], cursor
        found = {r.external_id: r for r in directory_entries(broadcast.audience, ids, inbox_only=plan.inbox_only)}
        return [(i, found.get(i)) for i in ids], cursor + len(ids)
    people = list(
        segment_people(broadcast.audience, broadcast.segment_channel).filter(pk__gt=cursor).order_by("pk")[:size]
    )
    return [(r.external_id, r) for r in people], (people[-1].pk if people else cursor)


def _write(plan: _Plan, people: list[tuple[str, Recipient | None]]) -> tuple[int, int]:
    """Write one chunk's inbox rows and deliveries; returns (people reached, people skipped)."""
    broadcast, rendered = plan.broadcast, plan.rendered
    category = rendered["category"]
    critical = broadcast.importance == Importance.CRITICAL or broadcast.template.critical
    opt_in = broadcast.importance == Importance.MARKETING
    default = plan.defaults.get(broadcast.audience)
    if plan.inbox_only and broadcast.source == BroadcastSource.LIST:
        preferences = {r.pk: r.preference for _, r in people if r is not None}
    else:
        preferences = preferences_for(r.pk for _, r in people if r is not None)

    def allowed(recipient, channel):
        if critical:
            return True
        preference = preferences.get(recipient.pk) if recipient is not None else None
        return allows(preference, default, channel=channel, category=category, opt_in=opt_in)

    owners, requests, reached = [], [], set()
    quiet = plan.quiet
    until = quiet_until(timezone.now(), quiet.quiet_start, quiet.quiet_end, hospital_zone()) if quiet else None
    for external_id, recipient in people:
        for channel in broadcast.channels:
            if channel == Channel.INBOX:
                if allowed(recipient, channel):
                    key = f"b{broadcast.pk}:{broadcast.audience}:{external_id}"
                    owners.append((broadcast.audience, external_id, key))
                    reached.add(external_id)
                continue
            if recipient is None:
                continue  # not in the directory: no address on any provider channel
            request = _delivery_request(plan, recipient, channel, allowed(recipient, channel), critical, until)
            requests.append(request)
            if request.status != DeliveryStatus.SKIPPED and address_for(channel=channel, recipient=recipient):
                reached.add(external_id)
    inbox_message_put_to_many(
        owners=owners,
        content={
            "title": rendered["title"],
            "body": rendered["body"],
            "category": category,
            "link": rendered["link"],
            "actions": rendered.get("actions", []),
            "template_code": broadcast.template.code,
        },
    )
    if requests:
        deliveries_create(requests=requests)
    return len(reached), len(people) - len(reached)


def _delivery_request(plan: _Plan, recipient: Recipient, channel: str, allowed: bool, critical: bool, quiet_until):
    rendered, binding = plan.rendered, plan.bindings[channel]
    decision = {}
    if not allowed:
        decision = {"status": DeliveryStatus.SKIPPED, "reason": "opted_out"}
    elif not critical and channel in QUIET_CHANNELS and quiet_until is not None:
        decision = {"status": DeliveryStatus.DEFERRED, "reason": "quiet_hours", "not_before": quiet_until}
    return DeliveryRequest(
        channel=channel,
        recipient=recipient,
        content={
            "title": rendered["title"],
            "body": rendered["body"],
            "category": rendered["category"],
            "link": rendered["link"],
            "actions": rendered.get("actions", []),
            **rendered["channels"].get(channel, {}),
        },
        idempotency_key=f"b{plan.broadcast.pk}:{channel}:{recipient.pk}",
        template_code=plan.broadcast.template.code,
        account=binding.account,
        **decision,
    )


def broadcast_run(*, broadcast_id: int, chunk_size: int = CHUNK) -> str:
    """Write the broadcast chunk by chunk until it is done or cancelled; returns its status.
    Safe to run twice at once (the chunks serialize on the broadcast's row) and after a kill."""
    broadcast = Broadcast.objects.select_related("template", "template__link").filter(pk=broadcast_id).first()
    if broadcast is None or broadcast.status not in OPEN:
        return broadcast.status if broadcast else ""
    try:
        plan = _plan(broadcast)
    except RenderError as err:  # the template was edited since the broadcast was made
        Broadcast.objects.filter(pk=broadcast_id, status__in=OPEN).update(
            status=BroadcastStatus.FAILED,
            last_error=f"render_failed: {err}",
            finished_at=timezone.now(),
            external_ids=[],
        )
        return BroadcastStatus.FAILED
    failures = 0
    while True:
        try:
            status = _chunk(plan, chunk_size, give_up=failures >= GIVE_UP_AFTER)
        except Exception as err:
            failures += 1
            logger.exception("broadcast %s: chunk failed (%s in a row)", broadcast_id, failures)
            if not connection.in_atomic_block:  # a broken connection is opened anew for the next try
                connection.close_if_unusable_or_obsolete()
            if failures > GIVE_UP_AFTER:  # not the chunk: the database itself; the resume scan retries
                return BroadcastStatus.RUNNING
            Broadcast.objects.filter(pk=broadcast_id).update(last_error=f"{type(err).__name__}: {err}"[:2000])
            time.sleep(failures)
            continue
        failures = 0
        if status is not None:
            return status


def _chunk(plan: _Plan, size: int, *, give_up: bool) -> str | None:
    """One chunk in one transaction; returns the final status when there is nothing left to do."""
    now = timezone.now()
    with transaction.atomic():
        state = (
            Broadcast.objects.select_for_update()
            .only("status", "cursor", "done", "skipped", "failed", "started_at")
            .get(pk=plan.broadcast.pk)
        )
        if state.status not in OPEN:
            return state.status
        people, cursor = _next_people(plan, state.cursor, size)
        changes = {"cursor": cursor, "progress_at": now, "status": BroadcastStatus.RUNNING}
        if state.started_at is None:
            changes["started_at"] = now
        if not people:
            changes.update(status=BroadcastStatus.DONE, finished_at=now, external_ids=[])
            changes["total"] = state.done + state.skipped + state.failed
        elif give_up:
            changes["failed"] = state.failed + len(people)
        else:
            reached, skipped = _write(plan, people)
            changes.update(done=state.done + reached, skipped=state.skipped + skipped)
        Broadcast.objects.filter(pk=state.pk).update(**changes)
        return changes["status"] if not people else None


def broadcast_cancel(*, broadcast_id: int) -> bool:
    """Stop a broadcast. People already written keep their inbox message; their provider messages
    not gone out yet (queued, or held by quiet hours until morning) are cancelled in the same
    transaction, so a cancelled broadcast sends no more SMS or pushes; the ones a worker is
    sending at that moment finish. A broadcast whose writing is done can still be cancelled while
    some of its provider messages wait. Returns whether anything was stopped (False: it had
    ended and nothing of it was left to send). Waits for the chunk being written (its lock)."""
    now = timezone.now()
    with transaction.atomic():
        stopped = Broadcast.objects.filter(pk=broadcast_id, status__in=OPEN).update(
            status=BroadcastStatus.CANCELLED, finished_at=now, external_ids=[]
        )
        unsent = deliveries_cancel_keyed(key_prefix=f"b{broadcast_id}:", reason="broadcast_cancelled")
        if unsent and not stopped:
            Broadcast.objects.filter(pk=broadcast_id, status=BroadcastStatus.DONE).update(
                status=BroadcastStatus.CANCELLED
            )
    if stopped or unsent:
        logger.info("broadcast %s cancelled; %s provider messages not sent yet cancelled", broadcast_id, unsent)
    return bool(stopped or unsent)


def broadcasts_resume_stale(*, now=None) -> int:
    """The resume scan (beat): open broadcasts without progress for STALE_AFTER (a worker killed,
    an enqueue lost) are handed to a worker again. Returns how many."""
    now = now or timezone.now()
    stale = list(
        Broadcast.objects.filter(status__in=OPEN, created_at__lt=now - STALE_AFTER)
        .exclude(progress_at__gte=now - STALE_AFTER)
        .values_list("pk", flat=True)
    )
    for pk in stale:
        broadcast_enqueue(broadcast_id=pk)
    return len(stale)


def broadcast_answer(broadcast: Broadcast) -> dict:
    """A broadcast's progress as the API answers it."""
    return {
        "id": broadcast.pk,
        "name": broadcast.name,
        "template": broadcast.template.code,
        "audience": broadcast.audience,
        "channels": broadcast.channels,
        "status": broadcast.status,
        "total": broadcast.total,
        "done": broadcast.done,
        "skipped": broadcast.skipped,
        "failed": broadcast.failed,
        "created_at": broadcast.created_at,
        "started_at": broadcast.started_at,
        "finished_at": broadcast.finished_at,
    }
