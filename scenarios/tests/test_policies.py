"""Delivery policies through the real intake path: critical, preferences, quiet hours, caps and
de-duplication, fallback chains (scenarios/policies.py)."""

import itertools
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from channels import providers
from channels.models import Channel, Delivery, DeliveryStatus, PreferenceDefault
from channels.providers import DeliveryResult
from channels.providers.testing import RecordingBackend
from channels.services import deliveries_release_deferred
from scenarios.models import AudiencePolicy, ChannelBinding, Importance, Message, QuietHours, Rule, Scenario, Template
from scenarios.policies import chains_advance, quiet_until

pytestmark = pytest.mark.django_db(transaction=True)

_keys = itertools.count(1)
DOCTOR = {"id": "d-17", "push_registration_ids": ["reg-d17"], "phone": "13812345678"}


@pytest.fixture(autouse=True)
def push(monkeypatch):
    """App pushes and OA templates answered by a recording backend: no account needed."""
    backend = RecordingBackend()
    monkeypatch.setitem(providers.BACKENDS, Channel.APP_PUSH, backend)
    return backend


def event(backend, code, recipients, **data):
    payload = {
        "event": code,
        "idempotency_key": f"policy-{next(_keys)}",
        "data": {**Scenario.objects.get(code=code).sample_data, **data},
        "recipients": recipients,
    }
    response = backend.post("/api/v1/events", payload, format="json")
    assert response.status_code == 202, response.json()
    return response.json()


def deliveries(answer, channel=None):
    rows = Delivery.objects.filter(event_ref=answer["event_id"]).order_by("pk")
    return list(rows.filter(channel=channel) if channel else rows)


def one(answer, channel) -> Delivery:
    (row,) = deliveries(answer, channel)
    return row


# ----------------------------------------------------------------- critical and preferences


def test_critical_beats_a_preference_that_silences_the_rest(catalog, backend, push):
    turned_off = {"channels": {"app_push": False}}
    assert backend.put("/api/v1/recipients/doctor/d-17/preferences", turned_off, format="json").status_code == 200

    approved = event(backend, "prescription.approved", {"doctor": [DOCTOR]})
    rejected = event(backend, "prescription.rejected", {"doctor": [DOCTOR]})  # critical in the catalog

    skipped = one(approved, "app_push")
    assert (skipped.status, skipped.last_error_code) == (DeliveryStatus.SKIPPED, "opted_out")
    assert one(approved, "inbox").status == DeliveryStatus.SENT  # the inbox copy stays
    assert one(rejected, "app_push").status == DeliveryStatus.SENT
    assert [d.idempotency_key for d in push.sent] == [one(rejected, "app_push").idempotency_key]


def test_the_inbox_copy_goes_unless_the_inbox_is_turned_off_for_the_category(catalog, backend):
    body = {"categories": {"prescription": {"inbox": False}}}
    backend.put("/api/v1/recipients/doctor/d-17/preferences", body, format="json")

    approved = event(backend, "prescription.approved", {"doctor": [DOCTOR]})

    assert one(approved, "inbox").last_error_code == "opted_out"
    assert one(approved, "app_push").status == DeliveryStatus.SENT


def test_marketing_needs_an_opt_in(catalog, backend):
    Rule.objects.filter(code="doctor_approved").update(importance=Importance.MARKETING)

    before = event(backend, "prescription.approved", {"doctor": [DOCTOR]})
    body = {"categories": {"prescription": {"app_push": True}}}
    backend.put("/api/v1/recipients/doctor/d-17/preferences", body, format="json")
    after = event(backend, "prescription.approved", {"doctor": [DOCTOR]})

    assert one(before, "app_push").last_error_code == "opted_out"
    assert one(after, "app_push").status == DeliveryStatus.SENT


def test_an_audience_default_applies_until_the_person_says_otherwise(catalog, backend):
    PreferenceDefault.objects.create(audience="doctor", categories={"prescription": {"app_push": False}})

    by_default = event(backend, "prescription.approved", {"doctor": [DOCTOR]})
    backend.put("/api/v1/recipients/doctor/d-17/preferences", {"channels": {"app_push": True}}, format="json")
    still = event(backend, "prescription.approved", {"doctor": [DOCTOR]})
    body = {"categories": {"prescription": {"app_push": True}}}
    backend.put("/api/v1/recipients/doctor/d-17/preferences", body, format="json")
    own = event(backend, "prescription.approved", {"doctor": [DOCTOR]})

    assert one(by_default, "app_push").last_error_code == "opted_out"
    assert one(still, "app_push").last_error_code == "opted_out"  # the category default still says no
    assert one(own, "app_push").status == DeliveryStatus.SENT


def test_the_preferences_api_merges_a_put_and_shows_the_locked_rows(catalog, backend, doctor_app):
    first = doctor_app.put("/api/v1/inbox/preferences", {"channels": {"sms": False}}, format="json")
    second = doctor_app.put(
        "/api/v1/inbox/preferences", {"categories": {"consultation": {"app_push": False}}}, format="json"
    )

    assert first.status_code == second.status_code == 200
    answer = doctor_app.get("/api/v1/inbox/preferences").json()
    assert answer["channels"]["sms"] is False  # kept from the first PUT
    assert answer["channels"]["app_push"] is True
    assert answer["categories"]["consultation"]["app_push"] is False
    assert answer["categories"]["consultation"]["sms"] is False  # off everywhere
    assert answer["categories"]["points"]["app_push"] is True
    # dc_prescription_0000002 (rejected) and dc_inquiry_0000004 (appointment), dc_point_0000002 (code)
    assert answer["locked"] == {
        "consultation": ["app_push", "inbox", "wechat_mini_subscribe"],
        "points": ["sms"],
        "prescription": ["app_push", "inbox"],
    }
    assert backend.get("/api/v1/recipients/doctor/d-17/preferences").json() == answer


def test_the_preferences_api_names_what_it_refuses(catalog, backend, patient_app):
    response = patient_app.put(
        "/api/v1/inbox/preferences",
        {"channels": {"fax": False, "sms": "no"}, "categories": {"gossip": {"sms": False}}},
        format="json",
    )

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_preferences"
    assert set(body["fields"]) == {"channels.fax", "channels.sms", "categories.gossip"}
    assert backend.get("/api/v1/recipients/patient/p-42/preferences").json()["channels"]["sms"] is True


def test_preferences_need_the_recipients_scope_or_the_persons_own_token(catalog):
    from tests.clients import backend_client

    events_only = backend_client(scopes=("events",))
    assert events_only.get("/api/v1/recipients/doctor/d-17/preferences").status_code == 403


# ----------------------------------------------------------------- quiet hours


def shanghai_now():
    return timezone.now().astimezone(ZoneInfo("Asia/Shanghai"))


def quiet_now_until(end: time) -> None:
    """Quiet hours for doctors from a minute ago until `end`, Shanghai time."""
    start = (shanghai_now() - timedelta(minutes=1)).time().replace(second=0, microsecond=0)
    AudiencePolicy.objects.create(audience="doctor", quiet_start=start, quiet_end=end)


def next_local(end: time) -> datetime:
    now = shanghai_now()
    at = datetime.combine(now.date(), end, tzinfo=ZoneInfo("Asia/Shanghai"))
    return at if at > now else datetime.combine(now.date() + timedelta(days=1), end, tzinfo=at.tzinfo)


def test_a_held_delivery_goes_at_eight_in_shanghai_and_the_inbox_copy_at_once(catalog, backend, push):
    quiet_now_until(time(8, 0))

    answer = event(backend, "prescription.approved", {"doctor": [DOCTOR]})

    held = one(answer, "app_push")
    assert (held.status, held.last_error_code) == (DeliveryStatus.DEFERRED, "quiet_hours")
    assert held.not_before == next_local(time(8, 0))
    assert timezone.localtime(held.not_before).strftime("%H:%M") == "08:00"
    assert one(answer, "inbox").status == DeliveryStatus.SENT
    detail = backend.get(f"/api/v1/events/{answer['event_id']}").json()
    (shown,) = [d for d in detail["messages"][0]["deliveries"] if d["channel"] == "app_push"]
    assert shown["status"] == "deferred" and shown["deferred_until"].endswith("08:00:00+08:00")

    assert deliveries_release_deferred(now=held.not_before - timedelta(seconds=1)) == 0
    Delivery.objects.filter(pk=held.pk).update(not_before=timezone.now())  # 08:00 has come
    assert deliveries_release_deferred() == 1
    assert Delivery.objects.get(pk=held.pk).status == DeliveryStatus.SENT
    assert len(push.sent) == 1


def test_a_stale_message_is_dropped_in_quiet_hours_and_a_critical_one_goes(catalog, backend):
    quiet_now_until(time(8, 0))
    Rule.objects.filter(code="doctor_approved").update(quiet_hours=QuietHours.DROP)

    dropped = event(backend, "prescription.approved", {"doctor": [DOCTOR]})
    critical = event(backend, "prescription.rejected", {"doctor": [DOCTOR]})

    assert (one(dropped, "app_push").status, one(dropped, "app_push").last_error_code) == (
        DeliveryStatus.SKIPPED,
        "quiet_hours",
    )
    assert one(critical, "app_push").status == DeliveryStatus.SENT


def test_a_rule_can_have_its_own_quiet_hours_or_none(catalog, backend):
    quiet_now_until(time(8, 0))
    Rule.objects.filter(code="doctor_approved").update(quiet_hours=QuietHours.IGNORE)

    answer = event(backend, "prescription.approved", {"doctor": [DOCTOR]})

    assert one(answer, "app_push").status == DeliveryStatus.SENT


@pytest.mark.parametrize(
    ("zone", "now_utc", "until_utc"),
    [
        # Shanghai, no DST: 23:00 → 08:00 the next day (00:00 UTC).
        ("Asia/Shanghai", datetime(2026, 11, 25, 15, 0, tzinfo=UTC), datetime(2026, 11, 26, 0, 0, tzinfo=UTC)),
        # New York, the night clocks spring forward (2026-03-08 02:00 EST → 03:00 EDT): 08:00 EDT.
        ("America/New_York", datetime(2026, 3, 8, 4, 0, tzinfo=UTC), datetime(2026, 3, 8, 12, 0, tzinfo=UTC)),
        # ... and fall back (2026-11-01 02:00 EDT → 01:00 EST): 08:00 EST.
        ("America/New_York", datetime(2026, 11, 1, 5, 30, tzinfo=UTC), datetime(2026, 11, 1, 13, 0, tzinfo=UTC)),
        # Before midnight, the window ends tomorrow morning, across the change.
        ("America/New_York", datetime(2026, 3, 8, 3, 30, tzinfo=UTC), datetime(2026, 3, 8, 12, 0, tzinfo=UTC)),
        # Outside the window: no hold.
        ("America/New_York", datetime(2026, 3, 8, 16, 0, tzinfo=UTC), None),
    ],
)
def test_quiet_hours_end_at_eight_local_across_a_dst_change(zone, now_utc, until_utc):
    until = quiet_until(now_utc, time(22, 0), time(8, 0), ZoneInfo(zone))

    assert until == until_utc
    if until is not None:
        assert until.astimezone(ZoneInfo(zone)).strftime("%H:%M") == "08:00"


def test_quiet_hours_follow_the_hospitals_zone_setting(catalog, backend, settings):
    settings.TIME_ZONE = "America/New_York"
    here = timezone.now().astimezone(ZoneInfo("America/New_York"))
    start = (here - timedelta(minutes=1)).time().replace(second=0, microsecond=0)
    AudiencePolicy.objects.create(audience="doctor", quiet_start=start, quiet_end=time(8, 0))

    answer = event(backend, "prescription.approved", {"doctor": [DOCTOR]})

    held = one(answer, "app_push")
    assert held.status == DeliveryStatus.DEFERRED
    assert held.not_before.astimezone(ZoneInfo("America/New_York")).strftime("%H:%M") == "08:00"


# ----------------------------------------------------------------- caps and de-duplication


@pytest.fixture(params=["redis", "database"])
def counted_in(request, settings):
    """Caps and de-duplication are counted in Redis, or in the database where there is no Redis."""
    if request.param == "database":
        settings.REDIS_URL = ""
    return request.param


def test_a_cap_of_three_pushes_in_ten_minutes_skips_the_fourth_but_not_its_inbox_copy(catalog, backend, counted_in):
    Rule.objects.filter(code="doctor_approved").update(cap_count=3, cap_window_minutes=10)

    answers = [event(backend, "prescription.approved", {"doctor": [DOCTOR]}) for _ in range(4)]

    assert [one(a, "app_push").status for a in answers] == [DeliveryStatus.SENT] * 3 + [DeliveryStatus.SKIPPED]
    assert one(answers[3], "app_push").last_error_code == "capped"
    assert [one(a, "inbox").status for a in answers] == [DeliveryStatus.SENT] * 4
    if counted_in == "redis":
        expire_policy_windows()  # ten minutes later
    else:
        Delivery.objects.update(created_at=timezone.now() - timedelta(minutes=11))
    assert one(event(backend, "prescription.approved", {"doctor": [DOCTOR]}), "app_push").status == "sent"


def test_the_same_inquiry_within_the_window_is_deduplicated(catalog, backend, counted_in):
    Rule.objects.filter(code="doctor_approved").update(dedup_field="prescription_id", dedup_window_minutes=10)

    first = event(backend, "prescription.approved", {"doctor": [DOCTOR]}, prescription_id="7001")
    again = event(backend, "prescription.approved", {"doctor": [DOCTOR]}, prescription_id="7001")
    other = event(backend, "prescription.approved", {"doctor": [DOCTOR]}, prescription_id="7002")

    assert {d.status for d in deliveries(first)} == {DeliveryStatus.SENT}
    assert {(d.status, d.last_error_code) for d in deliveries(again)} == {(DeliveryStatus.SKIPPED, "deduplicated")}
    assert {d.status for d in deliveries(other)} == {DeliveryStatus.SENT}


def expire_policy_windows():
    """The windows (caps, de-duplication) live in Redis: as if they had run out."""
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in [*client.scan_iter("nc:dedup:*"), *client.scan_iter("nc:cap:*")]:
        client.delete(key)


def test_an_old_duplicate_outside_the_window_does_not_count(catalog, backend):
    Rule.objects.filter(code="doctor_approved").update(dedup_field="prescription_id", dedup_window_minutes=10)
    event(backend, "prescription.approved", {"doctor": [DOCTOR]})
    expire_policy_windows()

    again = event(backend, "prescription.approved", {"doctor": [DOCTOR]})

    assert {d.status for d in deliveries(again)} == {DeliveryStatus.SENT}


def test_twenty_concurrent_events_for_one_doctor_give_exactly_the_cap(catalog, live_server, push, counted_in):
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from notifycenter.models import ApiKey

    Rule.objects.filter(code="doctor_approved").update(cap_count=3, cap_window_minutes=10)
    key = ApiKey.generate(client="his", name="race", scopes=["events"])[1]
    data = Scenario.objects.get(code="prescription.approved").sample_data

    def post(i):
        payload = {
            "event": "prescription.approved",
            "idempotency_key": f"cap-{i}",
            "data": {**data, "prescription_id": str(8000 + i)},
            "recipients": {"doctor": [DOCTOR]},
        }
        for attempt in range(10):
            try:
                with httpx.Client(timeout=30) as client:
                    r = client.post(
                        f"{live_server.url}/api/v1/events", json=payload, headers={"Authorization": f"Api-Key {key}"}
                    )
                    return r.status_code
            except httpx.TransportError:
                import time as clock

                clock.sleep(0.05 * (attempt + 1))
        raise AssertionError("the server never answered")

    with ThreadPoolExecutor(max_workers=20) as pool:
        assert list(pool.map(post, range(20))) == [202] * 20

    pushes = Delivery.objects.filter(channel="app_push", recipient__external_id="d-17")
    assert pushes.count() == 20
    assert pushes.exclude(status=DeliveryStatus.SKIPPED).count() == 3
    assert pushes.filter(status=DeliveryStatus.SKIPPED, last_error_code="capped").count() == 17
    assert Delivery.objects.filter(channel="inbox", status=DeliveryStatus.SENT).count() == 20


# ----------------------------------------------------------------- fallback chains


@pytest.fixture
def chain(catalog, monkeypatch):
    """Doctor accepted (patient): official-account template, then SMS, both recorded."""
    template = Template.objects.get(code="pt_inquiry_0000002")
    ChannelBinding.objects.create(template=template, channel="sms", external_template_id="SMS_1", params={})
    Rule.objects.filter(code="patient_accepted").update(fallback_chain=["wechat_oa_template", "sms"])
    backends = {}
    for channel in ("wechat_oa_template", "sms"):
        backends[channel] = RecordingBackend()
        monkeypatch.setitem(providers.BACKENDS, channel, backends[channel])
    return backends


def test_a_chain_stops_at_the_first_channel_that_delivered(chain, backend):
    patient = {"id": "p-42", "wechat_oa_openid": "oOA-p42", "phone": "13912345678"}

    answer = event(backend, "inquiry.accepted", {"patient": [patient]})
    assert chains_advance() == 0

    assert [d.channel for d in deliveries(answer)] == ["inbox", "wechat_oa_template"]
    assert one(answer, "wechat_oa_template").status == DeliveryStatus.SENT
    assert chain["sms"].sent == []
    assert not Message.objects.filter(chain_pending=True).exists()


def test_a_chain_moves_on_only_when_the_previous_channel_ended_for_good(chain, backend):
    chain["wechat_oa_template"].results = [
        DeliveryResult("permanent", "43004", "require subscribe"),  # not following the account
    ]
    patient = {"id": "p-42", "wechat_oa_openid": "oOA-p42", "phone": "13912345678"}

    answer = event(backend, "inquiry.accepted", {"patient": [patient]})
    assert one(answer, "wechat_oa_template").status == DeliveryStatus.FAILED
    assert deliveries(answer, "sms") == []  # never in parallel

    assert chains_advance() == 1
    assert chains_advance() == 0  # the chain is done: nothing twice

    assert one(answer, "sms").status == DeliveryStatus.SENT
    assert len(chain["sms"].sent) == 1


def test_a_chain_skips_a_channel_without_an_address(chain, backend):
    answer = event(backend, "inquiry.accepted", {"patient": [{"id": "p-42", "phone": "13912345678"}]})
    assert one(answer, "wechat_oa_template").last_error_code == "no_address"

    chains_advance()

    assert one(answer, "sms").status == DeliveryStatus.SENT


def test_a_chain_waits_on_an_unknown_outcome_and_never_moves_on_from_it(chain, backend):
    chain["wechat_oa_template"].results = [DeliveryResult("unknown", "timeout", "read timed out")]
    patient = {"id": "p-42", "wechat_oa_openid": "oOA-p42", "phone": "13912345678"}

    answer = event(backend, "inquiry.accepted", {"patient": [patient]})
    assert one(answer, "wechat_oa_template").status == DeliveryStatus.UNKNOWN
    assert chains_advance() == 0
    assert Message.objects.filter(chain_pending=True).count() == 1  # still waiting for reconciliation

    Delivery.objects.filter(channel="wechat_oa_template").update(finished_at=timezone.now())  # unknown for good
    assert chains_advance() == 0

    assert deliveries(answer, "sms") == []
    assert not Message.objects.filter(chain_pending=True).exists()


# ----------------------------------------------------------------- reminders, timeline, matrix


def test_a_reminder_firing_in_quiet_hours_is_held_like_an_event(catalog, backend):
    from scenarios.services import messages_fire_due

    quiet_now_until(time(8, 0))
    now = timezone.now()
    booked = event(
        backend,
        "inquiry.appointment_booked",
        {"doctor": [DOCTOR]},
        consultation_type="video",
        appointment_time=(now - timedelta(minutes=9)).isoformat(),  # the 10-minute check is due in a minute
    )
    (reminder,) = Message.objects.filter(event_id=booked["event_id"], rule__code="doctor_no_video_10min_after")

    assert messages_fire_due(now=now + timedelta(minutes=2), message_ids=[reminder.pk]) == 1

    held = Delivery.objects.get(message_ref=reminder.pk, channel="app_push")
    assert (held.status, held.last_error_code) == (DeliveryStatus.DEFERRED, "quiet_hours")
    assert Delivery.objects.get(message_ref=reminder.pk, channel="inbox").status == DeliveryStatus.SENT


def test_the_timeline_and_the_matrix_show_policy_decisions_in_chinese(catalog, backend, admin_client):
    from django.urls import reverse

    quiet_now_until(time(8, 0))
    Rule.objects.filter(code="doctor_approved").update(cap_count=1)
    backend.put("/api/v1/recipients/doctor/d-17/preferences", {"channels": {"inbox": False}}, format="json")
    answers = [event(backend, "prescription.approved", {"doctor": [DOCTOR]}) for _ in range(2)]

    page = admin_client.get(reverse("admin:scenarios_event_change", args=[answers[0]["event_id"]])).content.decode()
    assert "策略：暂缓至" in page and "08:00" in page
    assert "本人在偏好中已关闭" in page
    second = admin_client.get(reverse("admin:scenarios_event_change", args=[answers[1]["event_id"]])).content.decode()
    assert "超过规则的频控上限" in second
    matrix = admin_client.get(reverse("admin:scenarios_scenario_coverage") + "?domain=prescription").content.decode()
    assert "24 小时内跳过" in matrix
    assert "本人在偏好中已关闭 2" in matrix
    assert "超过规则的频控上限 1" in matrix


def test_messages_over_the_cap_are_summarized_in_one_at_the_windows_end(catalog, backend, push):
    from scenarios.services import messages_fire_due

    digest = Template.objects.create(
        code="dc_prescription_digest",
        name="审方结果汇总",
        audience="doctor",
        category="prescription",
        title="审方结果",
        body="您有 {{ collapsed_count }} 条新的审方结果",
    )
    ChannelBinding.objects.create(template=digest, channel="app_push")
    Rule.objects.filter(code="doctor_approved").update(cap_count=1, cap_window_minutes=10, collapse_template=digest)

    answers = [event(backend, "prescription.approved", {"doctor": [DOCTOR]}) for _ in range(6)]

    assert [one(a, "app_push").status for a in answers].count(DeliveryStatus.SENT) == 1
    (summary,) = Message.objects.filter(template=digest)
    assert summary.status == "scheduled" and summary.data_overrides == {"collapsed_count": 5}
    window_end = summary.due_at
    assert messages_fire_due(now=window_end - timedelta(seconds=1), message_ids=[summary.pk]) == 0
    Message.objects.filter(pk=summary.pk).update(due_at=timezone.now())  # the window's end has come
    assert messages_fire_due(message_ids=[summary.pk]) == 1

    (sent,) = Delivery.objects.filter(message_ref=summary.pk)
    assert sent.status == DeliveryStatus.SENT
    assert sent.content["body"] == "您有 5 条新的审方结果"
    assert len(push.sent) == 2


def test_caps_fall_back_to_the_database_when_redis_is_away(catalog, backend, monkeypatch):
    import redis

    from scenarios import caps

    monkeypatch.setattr(caps, "_client", redis.Redis(port=1, socket_connect_timeout=0.2))  # nothing listens
    Rule.objects.filter(code="doctor_approved").update(cap_count=1, dedup_field="prescription_id")

    first = event(backend, "prescription.approved", {"doctor": [DOCTOR]}, prescription_id="1")
    again = event(backend, "prescription.approved", {"doctor": [DOCTOR]}, prescription_id="1")
    other = event(backend, "prescription.approved", {"doctor": [DOCTOR]}, prescription_id="2")

    assert one(first, "app_push").status == DeliveryStatus.SENT
    assert one(again, "app_push").last_error_code == "deduplicated"
    assert one(other, "app_push").last_error_code == "capped"
