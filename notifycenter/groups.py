"""The three groups operations work in, with their permissions (issue 7):

- operations editor (运营编辑): scenarios, rules, templates, bindings, link targets, plans,
  recurring broadcasts and test recipients; broadcasts to a list or a segment (群发: send, cancel);
  the delivery policies' defaults (preference defaults, an audience's quiet hours); reads events,
  messages, deliveries and the inbox; cancels reminders; retries and cancels deliveries.
- operations viewer (运营只读): reads everything above, the coverage matrix and the logs.
- channel admin (渠道管理员): channel accounts and their credentials, recipients and consents;
  retries and cancels deliveries.

Running it again (or after new permissions appear) sets each group's permissions to this list.
"""

CONFIG = [
    "scenario",
    "rule",
    "template",
    "channelbinding",
    "linktarget",
    "followupplan",
    "planstep",
    "recurringbroadcast",
    "testrecipient",
]
LOGS = ["event", "message", "upcomingreminder", "planenrollment", "broadcast"]
CHANNEL_LOGS = ["delivery", "deliveryattempt"]
INBOX_LOGS = ["inboxmessage", "inboxactionpress"]
# The delivery policies' defaults, which operations own (docs/operations.md, Delivery policies).
POLICIES = {"scenarios": ["audiencepolicy"], "channels": ["preferencedefault"]}

GROUPS = {
    "operations editor": {
        "scenarios": [f"{a}_{m}" for m in CONFIG + POLICIES["scenarios"] for a in ("add", "change", "delete", "view")]
        + [f"view_{m}" for m in LOGS]
        + ["cancel_reminder", "add_broadcast", "cancel_broadcast"],
        "channels": [f"view_{m}" for m in CHANNEL_LOGS]
        + [f"{a}_{m}" for m in POLICIES["channels"] for a in ("add", "change", "delete", "view")]
        + ["view_recipient", "retry_delivery", "cancel_delivery"],
        "inbox": [f"view_{m}" for m in INBOX_LOGS],
        "django_celery_beat": ["view_crontabschedule", "add_crontabschedule", "change_crontabschedule"],
    },
    "operations viewer": {
        "scenarios": [f"view_{m}" for m in CONFIG + LOGS + POLICIES["scenarios"]],
        "channels": [f"view_{m}" for m in CHANNEL_LOGS + POLICIES["channels"]] + ["view_channelaccount"],
        "inbox": [f"view_{m}" for m in INBOX_LOGS],
    },
    "channel admin": {
        "channels": [
            f"{a}_{m}"
            for m in ("channelaccount", "recipient", "subscribeconsent")
            for a in ("add", "change", "delete", "view")
        ]
        + [f"view_{m}" for m in CHANNEL_LOGS]
        + ["view_otpcode", "retry_delivery", "cancel_delivery"],
        "scenarios": ["view_channelbinding", "view_template"],
    },
}


def groups_sync(Group, Permission) -> None:
    """Make the groups and set their permissions to GROUPS; works with the migration's historical
    models and with the real ones. A permission whose model a migration has not made yet is left
    out; the migration that makes it runs this again (e.g. 0003_test_recipient_permissions)."""
    for name, by_app in GROUPS.items():
        group, _ = Group.objects.get_or_create(name=name)
        wanted = [
            permission
            for app, codenames in by_app.items()
            for codename in codenames
            for permission in Permission.objects.filter(content_type__app_label=app, codename=codename)
        ]
        group.permissions.set(wanted)
