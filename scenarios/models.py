"""What, to whom, when: scenarios and their rules, templates and their channel bindings, link
targets, and the events and messages that flow through them."""

import re
from datetime import datetime, time

from django.core.exceptions import NON_FIELD_ERRORS, ObjectDoesNotExist, ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

from channels.models import Audience, Channel, ChannelAccount, Recipient
from inbox.answers import url_is_safe
from inbox.models import Category

from .schemas import compiled, schema_problem


class NaturalKeyManager(models.Manager):
    """Lets fixtures refer to rows by code, so loading the catalog twice updates, never duplicates."""

    key_fields: tuple[str, ...] = ("code",)

    def __init__(self, *key_fields):
        super().__init__()
        if key_fields:
            self.key_fields = key_fields

    def get_by_natural_key(self, *values):
        return self.get(**dict(zip(self.key_fields, values, strict=True)))


class Timestamped(models.Model):
    """created/updated times that also get set when rows come from a fixture (raw saves skip auto_now)."""

    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)
    updated_at = models.DateTimeField(_("updated at"), default=timezone.now, editable=False)

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        self.updated_at = timezone.now()
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "updated_at"}
        super().save(*args, **kwargs)


class Domain(models.TextChoices):
    INQUIRY = "inquiry", _("Consultation")
    MEMBERSHIP = "membership", _("Membership")
    QUESTIONNAIRE = "questionnaire", _("Questionnaire")
    PLAN = "plan", _("Follow-up plan")
    PRESCRIPTION = "prescription", _("Prescription")
    ORDER = "order", _("Order / after-sales")
    POINT = "point", _("Points")
    SYSTEM = "system", _("System")


class LinkTarget(models.Model):
    """A page a message opens, as a route with parameters and its form on each platform, per
    audience: a patient's link opens the patient's mini program, H5 page or patient app; a doctor's
    or pharmacist's opens the doctor app; operations staff's opens the back office.

    The URL fields are templates over the route parameters, e.g. `/pages/im/index?id={inquiry_id}`.
    """

    code = models.SlugField(_("code"), max_length=64, unique=True)
    name = models.CharField(_("name"), max_length=100)
    route = models.CharField(_("route"), max_length=100)
    params = models.JSONField(
        _("parameters"), default=dict, blank=True, help_text=_("Route parameter → template over event data.")
    )
    mini_program_page = models.CharField(_("patient mini-program page"), max_length=255, blank=True)
    h5_url = models.CharField(_("patient H5 URL"), max_length=255, blank=True)
    patient_app_url = models.CharField(_("patient app deep link"), max_length=255, blank=True)
    doctor_app_url = models.CharField(
        _("doctor app deep link"), max_length=255, blank=True, help_text=_("Doctors and pharmacists.")
    )
    admin_url = models.CharField(_("back-office URL"), max_length=255, blank=True, help_text=_("Operations staff."))
    working = models.BooleanField(
        _("verified working"), default=True, help_text=_("Untick while the target page is known not to open.")
    )
    notes = models.TextField(_("notes"), blank=True)

    objects = NaturalKeyManager()
    history = HistoricalRecords()

    class Meta:
        verbose_name = _("link target")
        verbose_name_plural = _("link targets")

    def __str__(self):
        return f"{self.name} ({self.code})"

    def natural_key(self):
        return (self.code,)

    def clean(self):
        super().clean()
        errors = {}
        for name in ("mini_program_page", "h5_url", "patient_app_url", "doctor_app_url", "admin_url"):
            value = getattr(self, name)
            if value and not url_is_safe(value):
                errors[name] = [_("A link that runs code (javascript:, data:…) is not a page.")]
            elif value and name in ("h5_url", "admin_url") and not value.startswith(("https://", "http://", "/")):
                errors[name] = [_("A web page: https://…, http://… or a path starting with /.")]
            elif value and value.startswith("//"):
                errors[name] = [_("A path starting with / on this site, or a full address with its scheme.")]
        if errors:
            raise ValidationError(errors)

    def forms_for(self, audience: str) -> dict[str, str]:
        """Platform → URL template for one audience: only that audience's own apps and pages."""
        if audience == "patient":
            return {"mini_program": self.mini_program_page, "h5": self.h5_url, "app": self.patient_app_url}
        if audience in ("doctor", "pharmacist"):
            return {"app": self.doctor_app_url}
        return {"h5": self.admin_url}  # operations: the back office, a web page


class Effect(models.TextChoices):
    NONE = "", _("None")
    PLAN_ENROLL = "plan_enroll", _("Enrol in a follow-up plan")
    PLAN_CANCEL = "plan_cancel", _("Stop a follow-up plan")


class Scenario(Timestamped):
    """A business event the hospital backend reports, e.g. `inquiry.paid`."""

    code = models.CharField(_("event name"), max_length=64, unique=True)
    name = models.CharField(_("name"), max_length=100)
    domain = models.CharField(_("domain"), max_length=16, choices=Domain.choices)
    description = models.TextField(_("description"), blank=True)
    enabled = models.BooleanField(_("enabled"), default=True)
    subject_type = models.CharField(
        _("subject type"), max_length=32, blank=True, help_text=_("What the event is about, e.g. inquiry.")
    )
    data_schema = models.JSONField(_("data schema"), default=dict, blank=True, help_text=_("JSON Schema of `data`."))
    sample_data = models.JSONField(_("sample data"), default=dict, blank=True)
    backend_call = models.CharField(_("backend call"), max_length=255, blank=True)
    effect = models.CharField(
        _("effect"),
        max_length=16,
        choices=Effect.choices,
        default=Effect.NONE,
        blank=True,
        help_text=_("Besides its rules: enrol in or stop a follow-up plan (data: plan, enrollment_id, start_date)."),
    )

    objects = NaturalKeyManager()
    history = HistoricalRecords()

    class Meta:
        verbose_name = _("scenario")
        verbose_name_plural = _("scenarios")
        ordering = ["domain", "code"]

    def __str__(self):
        return f"{self.name} ({self.code})"

    def natural_key(self):
        return (self.code,)

    def clean(self):
        super().clean()
        problem = json_schema_problem(self, "data_schema")
        if problem:
            raise ValidationError({"data_schema": problem})
        errors = self.data_problems()
        if errors:
            raise ValidationError(errors)

    def data_problems(self) -> dict[str, list[str]]:
        """With a valid schema: sample data that does not match it (the template previews and test
        sends render it)."""
        errors: dict[str, list[str]] = {}
        if not self.data_schema:
            return errors
        if self.sample_data:
            problems = [
                f"{error.json_path.replace('$', 'data', 1)}: {error.message}"
                for error in compiled(self.data_schema).iter_errors(self.sample_data)
            ]
            if problems:
                errors["sample_data"] = [
                    gettext("The sample data does not match the data schema: %(problems)s")
                    % {"problems": "; ".join(problems[:5])}
                ]
        return errors


def link_warnings(scenario: Scenario) -> list[str]:
    """What would leave the scenario's reminders never called off or moved, unless the backend
    sends each event's `subject` itself (scenarios/intake.py reads it from there first, then from
    the data's `<subject type>_id`): said after a save, not refused, since a backend may do so."""
    warnings = []
    subject = (scenario.subject_type or "").strip()
    properties = (scenario.data_schema or {}).get("properties")
    if subject and isinstance(properties, dict) and properties and f"{subject}_id" not in properties:
        ids = [name[: -len("_id")] for name in properties if name.endswith("_id")]
        warnings.append(
            gettext(
                "The data has no field %(field)s: unless the backend sends each event's subject itself, no event "
                "of this scenario is linked to the others (a cancellation calls off nothing). The name before _id "
                "of one of its id fields would be: %(choices)s."
            )
            % {"field": f"{subject}_id", "choices": ", ".join(ids) or "—"}
        )
    rules = [r for r in scenario.rules.all() if r.cancel_on or r.reschedule_on] if scenario.pk else []
    if rules and not subject:
        warnings.append(
            gettext(
                "The scenario has no subject type: unless the backend sends each event's subject itself, no event "
                "is linked to its reminders, and its rules' cancelled-by and moved-by never act."
            )
        )
    codes = {c for r in rules for c in (r.cancel_on or []) + (r.reschedule_on or []) if isinstance(c, str)}
    other = Scenario.objects.filter(code__in=codes).exclude(subject_type=subject).values_list("code", flat=True)
    if subject and other:
        warnings.append(
            gettext(
                "%(names)s is about another subject type than %(subject)s: its events do not match these reminders."
            )
            % {"names": ", ".join(sorted(other)), "subject": subject}
        )
    return warnings


def field_label(model, name: str) -> str:
    return str(model._meta.get_field(name).verbose_name)


def json_schema_problem(instance, name: str) -> str:
    """Why the JSON field `name` is no JSON Schema, naming the field, or "" (empty: no schema)."""
    schema = getattr(instance, name)
    problem = schema_problem(schema) if schema not in ({}, None) else None
    if problem is None:
        return ""
    return gettext("%(field)s is not a valid JSON Schema (Draft 2020-12): %(problem)s") % {
        "field": field_label(type(instance), name),
        "problem": problem,
    }


class Template(Timestamped):
    """What a person reads, per the hospital's template code (e.g. pt_inquiry_0000001).

    Title and body are sandboxed Jinja2 over the event data; a missing variable fails loudly.
    """

    code = models.CharField(_("template code"), max_length=64, unique=True)
    name = models.CharField(_("name"), max_length=100)
    audience = models.CharField(_("audience"), max_length=16, choices=Audience.choices)
    category = models.CharField(_("inbox category"), max_length=16, choices=Category.choices)
    title = models.CharField(_("title"), max_length=200)
    body = models.TextField(_("body"))
    link = models.ForeignKey(
        LinkTarget, verbose_name=_("opens"), null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    is_verification_code = models.BooleanField(
        _("verification code"), default=False, help_text=_("Carries a one-time code; never kept in clear.")
    )
    buttons = models.JSONField(
        _("buttons"),
        default=list,
        blank=True,
        help_text=_(
            'Up to two inbox buttons: [{"key": "accept", "label": "立即接诊", "link": "<link target code>", '
            '"style": "primary|default|danger"}].'
        ),
    )
    critical = models.BooleanField(
        _("critical"),
        default=False,
        help_text=_("No preference silences it and quiet hours do not hold it (e.g. prescription rejected)."),
    )

    objects = NaturalKeyManager()
    history = HistoricalRecords()

    class Meta:
        verbose_name = _("template")
        verbose_name_plural = _("templates")
        ordering = ["code"]

    def __str__(self):
        return f"{self.code} {self.name}"

    def natural_key(self):
        return (self.code,)

    # The admin's change form sets it: its bindings formset previews the template with the
    # bindings and sample data as submitted, which the stored ones would contradict.
    previewed_as_submitted = False

    def clean(self):
        super().clean()
        errors = {}
        problems = button_problems(self.buttons)
        if problems:
            errors["buttons"] = problems
        if not self.previewed_as_submitted:
            for field, lines in self.preview_problems().items():
                errors.setdefault(field, []).extend(lines)
        if errors:
            raise ValidationError(errors)

    def preview_problems(self) -> dict[str, list[str]]:
        """What the change form's preview would refuse, by field (so an import refuses it too):
        title, body, link and the stored enabled bindings, rendered from the sample data of the
        first scenario using the template. Without one (a new template imported before its
        rules), what needs no data: a syntax error, a link pattern naming an unknown parameter."""
        from .preview import render_problem, sample_data_for, template_preview  # preview imports models
        from .rendering import undefined_variable

        data = sample_data_for(self)
        bindings = list(self.bindings.filter(enabled=True).select_related("account")) if self.pk and data else []
        preview = template_preview(template=self, bindings=bindings, data=data)
        errors: dict[str, list[str]] = {}
        for field, message in preview.errors.items():
            if data or not undefined_variable(message):
                errors.setdefault(field.split(".")[0], []).append(render_problem(field, message))
        for channel in preview.channels:
            if channel.problems:
                errors.setdefault(NON_FIELD_ERRORS, []).extend(f"{channel.label}: {p}" for p in channel.problems)
        return errors


BUTTON_STYLES = ("primary", "default", "danger")


def button_problems(buttons) -> list[str]:
    """What is wrong with a template's buttons (empty when nothing): at most two, each with a
    unique key, a label, a known style and an existing link target."""
    if not isinstance(buttons, list):
        return [gettext("Buttons must be a list.")]
    if len(buttons) > 2:
        return [gettext("At most two buttons.")]
    problems, keys = [], set()
    for n, button in enumerate(buttons, 1):
        if not isinstance(button, dict):
            problems.append(gettext("Button %(n)s must be an object.") % {"n": n})
            continue
        key = button.get("key")
        if not isinstance(key, str) or not re.fullmatch(r"[a-z0-9_-]{1,32}", key) or key in keys:
            problems.append(gettext("Button %(n)s needs a unique key of lowercase letters, digits, - or _.") % {"n": n})
        keys.add(key)
        if not isinstance(button.get("label"), str) or not 0 < len(button["label"]) <= 20:
            problems.append(gettext("Button %(n)s needs a label of 1 to 20 characters.") % {"n": n})
        if button.get("style", "default") not in BUTTON_STYLES:
            problems.append(gettext("Button %(n)s: style is one of primary, default, danger.") % {"n": n})
        if not LinkTarget.objects.filter(code=button.get("link")).exists():
            problems.append(
                gettext("Button %(n)s: no link target with code %(code)s.") % {"n": n, "code": button.get("link")}
            )
    return problems


class ChannelBinding(models.Model):
    """A template bound to one channel, with that channel's own template id and parameters."""

    template = models.ForeignKey(
        Template, verbose_name=_("template"), on_delete=models.CASCADE, related_name="bindings"
    )
    channel = models.CharField(_("channel"), max_length=32, choices=Channel.choices)
    enabled = models.BooleanField(_("enabled"), default=True)
    account = models.ForeignKey(
        ChannelAccount,
        verbose_name=_("account"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        help_text=_("Empty: the channel's default account."),
    )
    external_template_id = models.CharField(
        _("provider template id"), max_length=128, blank=True, help_text=_("WeChat template id, SMS template code.")
    )
    params = models.JSONField(
        _("parameters"), default=dict, blank=True, help_text=_("Provider parameter → template over event data.")
    )
    options = models.JSONField(_("options"), default=dict, blank=True)

    objects = NaturalKeyManager("template__code", "channel")
    history = HistoricalRecords()

    class Meta:
        verbose_name = _("channel binding")
        verbose_name_plural = _("channel bindings")
        constraints = [models.UniqueConstraint(fields=["template", "channel"], name="binding_unique_channel")]

    def __str__(self):
        # The channel in words (站内信, 短信): what the console's inline rows and history pages show.
        return f"{self.template.code} → {self.get_channel_display()}"

    def natural_key(self):
        return (self.template.code, self.channel)

    natural_key.dependencies = ["scenarios.template"]

    def clean(self):
        super().clean()
        if self.account_id and self.account.channel != self.channel:
            # Its deliveries would go to this channel's provider with another channel's keys.
            raise ValidationError(
                {
                    "account": gettext("%(account)s sends %(its)s, not %(channel)s.")
                    % {
                        "account": self.account.name,
                        "its": self.account.get_channel_display(),
                        "channel": self.get_channel_display(),
                    }
                }
            )


class Importance(models.TextChoices):
    CRITICAL = "critical", _("Critical: no preference silences it")
    TRANSACTIONAL = "transactional", _("Transactional")
    MARKETING = "marketing", _("Marketing: only to people who opted in")


class QuietHours(models.TextChoices):
    HOLD = "hold", _("Hold until the window ends")
    DROP = "drop", _("Drop: stale by the window's end")
    IGNORE = "ignore", _("Send anyway")


class AudiencePolicy(models.Model):
    """An audience's quiet hours, in the hospital's time zone (e.g. 22:00-08:00 for patients)."""

    audience = models.CharField(_("audience"), max_length=16, choices=Audience.choices, unique=True)
    quiet_start = models.TimeField(_("quiet hours start"), null=True, blank=True)
    quiet_end = models.TimeField(_("quiet hours end"), null=True, blank=True)
    history = HistoricalRecords()

    class Meta:
        verbose_name = _("audience policy")
        verbose_name_plural = _("audience policies")

    def __str__(self):
        return self.get_audience_display()


class Rule(models.Model):
    """Who is told, with which template, under which condition and when, for one scenario."""

    scenario = models.ForeignKey(Scenario, verbose_name=_("scenario"), on_delete=models.CASCADE, related_name="rules")
    code = models.SlugField(_("code"), max_length=64)
    audience = models.CharField(_("audience"), max_length=16, choices=Audience.choices)
    template = models.ForeignKey(Template, verbose_name=_("template"), on_delete=models.PROTECT, related_name="rules")
    enabled = models.BooleanField(_("enabled"), default=True)
    condition = models.JSONField(
        _("condition"), default=dict, blank=True, help_text=_("JSON Schema the data must match; empty: always.")
    )
    default_recipients = models.JSONField(
        _("default recipients"),
        default=list,
        blank=True,
        help_text=_("External ids used when the event names none for this audience (e.g. the ops duty group)."),
    )
    anchor_field = models.CharField(
        _("anchor field"), max_length=64, blank=True, help_text=_("Data field with the time to fire at; empty: now.")
    )
    offset_minutes = models.IntegerField(_("offset (minutes)"), default=0)
    grace_minutes = models.PositiveIntegerField(
        _("grace (minutes)"), default=0, help_text=_("A reminder this late when its event arrives is still sent.")
    )
    cancel_on = models.JSONField(
        _("cancelled by"), default=list, blank=True, help_text=_("Events about the same subject that cancel it.")
    )
    reschedule_on = models.JSONField(
        _("moved by"),
        default=list,
        blank=True,
        help_text=_("Events about the same subject whose data carries a new anchor time; pending reminders move."),
    )
    # Delivery policies (scenarios/policies.py), applied in this order: critical → preferences →
    # quiet hours → caps and de-duplication → fallback chain → provider failover (channels).
    importance = models.CharField(
        _("importance"), max_length=16, choices=Importance.choices, default=Importance.TRANSACTIONAL
    )
    quiet_hours = models.CharField(
        _("in quiet hours"), max_length=8, choices=QuietHours.choices, default=QuietHours.HOLD
    )
    quiet_start = models.TimeField(
        _("quiet hours start"), null=True, blank=True, help_text=_("Empty: the audience's quiet hours.")
    )
    quiet_end = models.TimeField(_("quiet hours end"), null=True, blank=True)
    cap_count = models.PositiveIntegerField(
        _("cap"), null=True, blank=True, help_text=_("At most this many per person and channel in the window.")
    )
    cap_window_minutes = models.PositiveIntegerField(_("cap window (minutes)"), default=10)
    collapse_template = models.ForeignKey(
        "Template",
        verbose_name=_("summary over the cap"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text=_(
            "Messages over the cap are summarized in one, at the window's end, with this template "
            "({{ collapsed_count }} is how many), e.g. 您有 {{ collapsed_count }} 条新的接诊提醒."
        ),
    )
    dedup_field = models.CharField(
        _("de-duplication key"),
        max_length=64,
        blank=True,
        help_text=_("Data field (e.g. inquiry_id): the same value again within the window is dropped."),
    )
    dedup_window_minutes = models.PositiveIntegerField(_("de-duplication window (minutes)"), default=10)
    fallback_chain = models.JSONField(
        _("fallback chain"),
        default=list,
        blank=True,
        help_text=_(
            'Channels tried one after another, e.g. ["wechat_mini_subscribe", "wechat_oa_template", "sms"]: '
            "the next only when the previous ended for good for this person."
        ),
    )

    objects = NaturalKeyManager("scenario__code", "code")
    history = HistoricalRecords()

    class Meta:
        verbose_name = _("rule")
        verbose_name_plural = _("rules")
        constraints = [models.UniqueConstraint(fields=["scenario", "code"], name="rule_unique_code")]

    def __str__(self):
        return f"{self.scenario.code}/{self.code}"

    def natural_key(self):
        return (self.scenario.code, self.code)

    natural_key.dependencies = ["scenarios.scenario", "scenarios.template"]

    @property
    def is_timed(self) -> bool:
        return bool(self.anchor_field)

    def clean(self):
        super().clean()
        errors = self.policy_problems()
        problem = json_schema_problem(self, "condition")
        if problem:
            errors["condition"] = [problem]
        if errors:
            raise ValidationError(errors)

    def _related(self, name: str):
        """The scenario or a template, or None while the form has not one (its own error says so)."""
        try:
            return getattr(self, name)
        except ObjectDoesNotExist:
            return None

    def policy_problems(self) -> dict[str, list[str]]:
        """Delivery-policy values scenarios/policies.py would silently ignore or that would
        silence the rule, by field, each message naming its field."""
        errors: dict[str, list[str]] = {}

        def refuse(field: str, message: str, **values):
            errors.setdefault(field, []).append(message % {"field": field_label(Rule, field), **values})

        if self.cap_count == 0:
            # 0 would skip every external channel as capped: disabling a binding says that plainly.
            message = gettext("%(field)s: at least 1 (empty: no cap; to stop a channel, disable its binding).")
            refuse("cap_count", message)
        if self.cap_count and not self.cap_window_minutes:
            refuse("cap_window_minutes", gettext("%(field)s: at least 1 minute when there is a cap."))
        if self.dedup_field and not self.dedup_window_minutes:
            refuse("dedup_window_minutes", gettext("%(field)s: at least 1 minute when there is a key."))
        if (self.quiet_start is None) != (self.quiet_end is None):
            missing = "quiet_end" if self.quiet_end is None else "quiet_start"
            refuse(missing, gettext("%(field)s: set both ends of the quiet hours, or neither."))
        elif self.quiet_start is not None and self.quiet_start == self.quiet_end:
            refuse("quiet_end", gettext("%(field)s: the same as the start, which makes no quiet hours."))
        scenario = self._related("scenario")
        properties = (scenario.data_schema or {}).get("properties") if scenario is not None else None
        if self.dedup_field and isinstance(properties, dict) and self.dedup_field not in properties:
            refuse(
                "dedup_field",
                gettext("%(field)s: %(name)s is not a field of the scenario's data (one of: %(names)s)."),
                name=self.dedup_field,
                names=", ".join(properties),
            )
        collapse = self._related("collapse_template")
        if collapse is not None:
            if collapse.audience != self.audience:
                refuse(
                    "collapse_template",
                    gettext("%(field)s: %(code)s is for another audience (%(its)s); this rule tells %(ours)s."),
                    code=collapse.code,
                    its=collapse.get_audience_display(),
                    ours=self.get_audience_display(),
                )
            if self.cap_count is None:
                refuse("collapse_template", gettext("%(field)s: only used over a cap; set the cap too."))
        errors.update(self._chain_problems())
        for field, lines in self._link_problems(properties).items():
            errors.setdefault(field, []).extend(lines)
        return errors

    def _link_problems(self, properties) -> dict[str, list[str]]:
        """What would be saved without a word and then refuse every event, or never call a reminder
        off: an anchor field the data has not, a template written for another audience, and
        *cancelled by* / *moved by* naming no scenario's event, or set on a rule that is no
        reminder (a scenario configured from nothing in the console). Subjects that may not match
        are said after a save (link_warnings): the backend may send each event's subject."""
        errors: dict[str, list[str]] = {}
        anchor = (self.anchor_field or "").strip()
        if anchor and isinstance(properties, dict) and properties and anchor not in properties:
            errors["anchor_field"] = [
                gettext(
                    "%(name)s is not a field of the scenario's data, so every event of the scenario would be "
                    "refused; one of: %(names)s."
                )
                % {"name": anchor, "names": ", ".join(properties)}
            ]
        template = self._related("template")
        if template is not None and self.audience and template.audience != self.audience:
            errors["template"] = [
                gettext("%(code)s is written for %(its)s; this rule tells %(ours)s.")
                % {"code": template.code, "its": template.get_audience_display(), "ours": self.get_audience_display()}
            ]
        for name in ("cancel_on", "reschedule_on"):
            lines = self._events_problems(getattr(self, name), anchor)
            if lines:
                errors[name] = lines
        return errors

    @staticmethod
    def _events_problems(codes, anchor: str) -> list[str]:
        if not codes:
            return []
        if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
            return [gettext('A list of event names, e.g. ["vaccination.cancelled"].')]
        lines = []
        if not anchor:
            lines.append(gettext("Only a reminder (a rule with an anchor field) can be called off or moved."))
        known = set(Scenario.objects.filter(code__in=codes).values_list("code", flat=True))
        unknown = [c for c in codes if c not in known]
        if unknown:
            lines.append(
                gettext("No scenario has the event name %(names)s: add that scenario first, or correct the name.")
                % {"names": ", ".join(unknown)}
            )
        return lines

    def _chain_problems(self) -> dict[str, list[str]]:
        chain, label = self.fallback_chain, field_label(Rule, "fallback_chain")
        if chain in (None, []):
            return {}
        if not isinstance(chain, list) or not all(isinstance(c, str) for c in chain):
            message = gettext('%(field)s: a list of channels, e.g. ["wechat_mini_subscribe", "sms"].')
            return {"fallback_chain": [message % {"field": label}]}
        problems = []
        unknown = [c for c in chain if c not in Channel.values]
        if unknown:
            problems.append(
                gettext("%(field)s: unknown channel %(names)s; one of %(known)s.")
                % {"field": label, "names": ", ".join(unknown), "known": ", ".join(Channel.values)}
            )
        if len(set(chain)) != len(chain):
            problems.append(gettext("%(field)s: each channel once.") % {"field": label})
        template = self._related("template")
        if template is not None and not unknown:
            bound = set(ChannelBinding.objects.filter(template=template).values_list("channel", flat=True))
            unbound = [c for c in chain if c not in bound]
            if unbound:
                problems.append(
                    gettext("%(field)s: the template %(code)s has no binding for %(names)s.")
                    % {"field": label, "code": template.code, "names": ", ".join(unbound)}
                )
        return {"fallback_chain": problems} if problems else {}


class Event(models.Model):
    """A business event as received, unique per client and idempotency key."""

    scenario = models.ForeignKey(Scenario, verbose_name=_("scenario"), on_delete=models.PROTECT, related_name="events")
    client = models.CharField(_("client"), max_length=64)
    idempotency_key = models.CharField(_("idempotency key"), max_length=128)
    request_hash = models.CharField(max_length=64)
    subject_type = models.CharField(_("subject type"), max_length=32, blank=True)
    subject_id = models.CharField(_("subject id"), max_length=64, blank=True)
    data = models.JSONField(_("data"), default=dict)
    recipients = models.JSONField(_("recipients"), default=dict)
    occurred_at = models.DateTimeField(_("occurred at"))
    answer = models.JSONField(_("answer"), default=dict, help_text=_("The first answer, given again on a replay."))
    received_at = models.DateTimeField(_("received at"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("event")
        verbose_name_plural = _("events")
        constraints = [
            models.UniqueConstraint(fields=["client", "idempotency_key"], name="event_unique_idempotency_key")
        ]
        indexes = [models.Index(fields=["subject_type", "subject_id"], name="event_subject")]

    def __str__(self):
        return f"{self.scenario.code} #{self.pk}"


class MessageStatus(models.TextChoices):
    SCHEDULED = "scheduled", _("Scheduled")
    DISPATCHED = "dispatched", _("Dispatched")
    CANCELLED = "cancelled", _("Cancelled")
    SKIPPED = "skipped", _("Skipped")
    FAILED = "failed", _("Failed")


class Message(models.Model):
    """One rule's message to one recipient, now or at its due time; its deliveries follow it."""

    event = models.ForeignKey(Event, verbose_name=_("event"), on_delete=models.CASCADE, related_name="messages")
    rule = models.ForeignKey(
        Rule, verbose_name=_("rule"), null=True, blank=True, on_delete=models.PROTECT, related_name="messages"
    )
    # No index of its own: message_unique_plan_occurrence (below) begins with it, where it is set.
    plan_step = models.ForeignKey(
        "PlanStep",
        verbose_name=_("plan step"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    template = models.ForeignKey(Template, verbose_name=_("template"), on_delete=models.PROTECT, related_name="+")
    recipient = models.ForeignKey(Recipient, verbose_name=_("recipient"), on_delete=models.PROTECT, related_name="+")
    audience = models.CharField(_("audience"), max_length=16, choices=Audience.choices)
    subject_type = models.CharField(_("subject type"), max_length=32, blank=True)
    subject_id = models.CharField(_("subject id"), max_length=64, blank=True)
    status = models.CharField(_("status"), max_length=16, choices=MessageStatus.choices)
    status_reason = models.CharField(_("reason"), max_length=255, blank=True)
    due_at = models.DateTimeField(_("due at"))
    rendered = models.JSONField(_("rendered"), default=dict, blank=True)
    data_overrides = models.JSONField(
        _("data overrides"), default=dict, blank=True, help_text=_("Event data changed since, e.g. a moved anchor.")
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    dispatched_at = models.DateTimeField(_("dispatched at"), null=True, blank=True)
    # A fallback chain still has channels to try (scenarios/policies.py's chain scan).
    chain_pending = models.BooleanField(_("fallback chain pending"), default=False)
    # Dispatched in a batch, its deliveries not made yet: a worker makes them right after the
    # batch's commit (scenarios/expansion.py), the outbox scan if that hand-off was lost.
    deliveries_pending = models.BooleanField(_("deliveries pending"), default=False)
    # The rule's de-duplication field's value in this message's data, kept so the next message
    # finds it by index (scenarios/policies.py).
    dedup_key = models.CharField(_("de-duplication key"), max_length=128, blank=True)

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        indexes = [
            # The reminder scan: scheduled messages whose time has come.
            models.Index(fields=["due_at"], condition=Q(status="scheduled"), name="message_due"),
            # Cancelling or moving a subject's pending reminders.
            models.Index(
                fields=["subject_type", "subject_id"], condition=Q(status="scheduled"), name="message_pending_subject"
            ),
            # The fallback-chain scan.
            models.Index(fields=["id"], condition=Q(chain_pending=True), name="message_chain_pending"),
            # Batches' messages whose deliveries are still to be made (scenarios/expansion.py).
            models.Index(fields=["id"], condition=Q(deliveries_pending=True), name="message_deliveries_pending"),
            # Policy de-duplication: one person's recent messages of one rule with one key.
            models.Index(
                fields=["rule", "recipient", "dedup_key", "dispatched_at"],
                condition=~Q(dedup_key=""),
                name="message_dedup",
            ),
        ]
        constraints = [
            # A plan's occurrence is materialized once, however often the horizon scan runs.
            models.UniqueConstraint(
                fields=["plan_step", "subject_id", "due_at"],
                condition=Q(plan_step__isnull=False),
                name="message_unique_plan_occurrence",
            )
        ]

    def __str__(self):
        return f"{self.template.code} → {self.audience}:{self.recipient.external_id}"


class UpcomingReminderManager(models.Manager):
    def get_queryset(self):
        return super().get_queryset().filter(status=MessageStatus.SCHEDULED)


class UpcomingReminder(Message):
    """Scheduled messages, as operations staff watch and cancel them in the admin."""

    objects = UpcomingReminderManager()

    class Meta:
        proxy = True
        verbose_name = _("upcoming reminder")
        verbose_name_plural = _("upcoming reminders")
        permissions = [("cancel_reminder", _("Can cancel upcoming reminders"))]


class RecurringBroadcast(models.Model):
    """An event operations staff send on a timetable (e.g. every Monday 09:00 a questionnaire
    reminder to a list of people), kept as one django-celery-beat periodic task."""

    name = models.CharField(_("name"), max_length=100, unique=True)
    scenario = models.ForeignKey(Scenario, verbose_name=_("scenario"), on_delete=models.PROTECT)
    data = models.JSONField(_("data"), default=dict, blank=True)
    recipients = models.JSONField(_("recipients"), default=dict, help_text=_('e.g. {"patient": ["p-1", "p-2"]}'))
    crontab = models.ForeignKey(
        "django_celery_beat.CrontabSchedule", verbose_name=_("timetable"), on_delete=models.PROTECT
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask", null=True, blank=True, editable=False, on_delete=models.SET_NULL
    )
    # The last run that was refused (its code and fields, as the API would answer them), cleared by
    # the next accepted run: written by the run (scenarios/broadcasts.py), not a change of the
    # configuration, so no history record.
    last_failure = models.TextField(_("last failure"), blank=True, editable=False)
    last_failure_at = models.DateTimeField(_("last failure at"), null=True, blank=True, editable=False)
    history = HistoricalRecords(excluded_fields=["last_failure", "last_failure_at"])

    class Meta:
        verbose_name = _("recurring broadcast")
        verbose_name_plural = _("recurring broadcasts")

    def __str__(self):
        return self.name


class FollowUpPlan(models.Model):
    """A follow-up plan (随访计划): reminders in steps after a patient is enrolled."""

    code = models.SlugField(_("code"), max_length=64, unique=True)
    name = models.CharField(_("name"), max_length=100)
    description = models.TextField(_("description"), blank=True)
    enabled = models.BooleanField(_("enabled"), default=True)

    objects = NaturalKeyManager()
    history = HistoricalRecords()

    class Meta:
        verbose_name = _("follow-up plan")
        verbose_name_plural = _("follow-up plans")

    def __str__(self):
        return self.name

    def natural_key(self):
        return (self.code,)


class PlanStep(models.Model):
    """One step: once, `day_offset` days after the start at `time_of_day`; or, with an RRULE
    (RFC 5545, e.g. FREQ=WEEKLY;BYDAY=MO;COUNT=4), every occurrence from the start at that time."""

    plan = models.ForeignKey(FollowUpPlan, verbose_name=_("plan"), on_delete=models.CASCADE, related_name="steps")
    order = models.PositiveIntegerField(_("order"), default=0)
    template = models.ForeignKey(Template, verbose_name=_("template"), on_delete=models.PROTECT, related_name="+")
    day_offset = models.PositiveIntegerField(_("day offset"), default=0)
    time_of_day = models.TimeField(_("time of day"), default=time(9, 0))
    rrule = models.CharField(_("RRULE"), max_length=255, blank=True)

    objects = NaturalKeyManager("plan__code", "order")
    history = HistoricalRecords()  # shown on its plan's history page (scenarios/admin_history.py)

    class Meta:
        verbose_name = _("plan step")
        verbose_name_plural = _("plan steps")
        ordering = ["plan", "order"]
        constraints = [models.UniqueConstraint(fields=["plan", "order"], name="plan_step_unique_order")]

    def __str__(self):
        return f"{self.plan.code} #{self.order}"

    def natural_key(self):
        return (self.plan.code, self.order)

    natural_key.dependencies = ["scenarios.followupplan", "scenarios.template"]

    def clean(self):
        super().clean()
        problem = self.rrule_problem()
        if problem:
            raise ValidationError({"rrule": problem})

    def rrule_problem(self) -> str:
        """Why the RRULE cannot be a step's, naming the field, or "" (none, or a good one). One
        rule line, starting at the enrollment's start at `time_of_day`, at most once a day: a
        follow-up is daily at most, and a minutely rule would write a reminder a minute."""
        if not self.rrule:
            return ""
        from dateutil.rrule import rrulestr

        label = field_label(PlanStep, "rrule")
        text = self.rrule.strip()
        rule = text[6:] if text.upper().startswith("RRULE:") else text
        if "\n" in text or ":" in rule:
            return gettext(
                "%(field)s: one rule, e.g. FREQ=WEEKLY;BYDAY=MO;COUNT=4 (no DTSTART, EXDATE or RDATE: "
                "it starts on the enrollment's start date at the time of day)."
            ) % {"field": label}
        tz = timezone.get_default_timezone()
        start = datetime.combine(timezone.localdate(), self.time_of_day or time(9), tzinfo=tz)
        try:
            rrulestr(text, dtstart=start)
        except (ValueError, TypeError) as err:
            return gettext(
                "%(field)s: not a valid recurrence rule (RFC 5545), e.g. FREQ=WEEKLY;BYDAY=MO;COUNT=4 (%(error)s)."
            ) % {"field": label, "error": err}
        parts = dict(part.split("=", 1) for part in rule.upper().split(";") if "=" in part)
        sub_daily = {"BYHOUR", "BYMINUTE", "BYSECOND"} & set(parts)
        if parts.get("FREQ") not in ("YEARLY", "MONTHLY", "WEEKLY", "DAILY") or sub_daily:
            return gettext(
                "%(field)s: at most once a day (FREQ=DAILY, WEEKLY, MONTHLY or YEARLY, without BYHOUR, BYMINUTE "
                "or BYSECOND); the time comes from the time of day."
            ) % {"field": label}
        if "COUNT" in parts and int(parts["COUNT"]) < 1:  # a valid rule here: COUNT is a number
            return gettext("%(field)s: COUNT must be at least 1.") % {"field": label}
        return ""


class EnrollmentStatus(models.TextChoices):
    ACTIVE = "active", _("Active")
    CANCELLED = "cancelled", _("Cancelled")
    COMPLETED = "completed", _("Completed")


class PlanEnrollment(models.Model):
    """A patient in a plan. Occurrences are materialized as scheduled messages a rolling horizon
    ahead (`materialized_until`), not all at enrolment."""

    plan = models.ForeignKey(FollowUpPlan, verbose_name=_("plan"), on_delete=models.PROTECT)
    recipient = models.ForeignKey(Recipient, verbose_name=_("recipient"), on_delete=models.PROTECT, related_name="+")
    enrollment_key = models.CharField(_("enrollment id"), max_length=64)
    event = models.ForeignKey(Event, verbose_name=_("enrolled by"), on_delete=models.PROTECT, related_name="+")
    start_date = models.DateField(_("start date"))
    status = models.CharField(_("status"), max_length=16, choices=EnrollmentStatus.choices, default="active")
    materialized_until = models.DateTimeField(_("materialized until"))
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("plan enrollment")
        verbose_name_plural = _("plan enrollments")
        constraints = [models.UniqueConstraint(fields=["plan", "enrollment_key"], name="enrollment_unique_key")]
        indexes = [models.Index(fields=["materialized_until"], condition=Q(status="active"), name="enrollment_horizon")]

    def __str__(self):
        return f"{self.plan.code}:{self.enrollment_key}"


class TestRecipient(models.Model):
    """A person the console's test sends may go to (a colleague's test account): a test never
    lands in a real patient's inbox. Their addresses are in the recipient directory as usual."""

    __test__ = False  # a model, not a pytest test class

    audience = models.CharField(_("audience"), max_length=16, choices=Audience.choices)
    external_id = models.CharField(_("external id"), max_length=64)
    name = models.CharField(_("name"), max_length=100, blank=True)
    notes = models.CharField(_("notes"), max_length=255, blank=True)

    class Meta:
        verbose_name = _("test recipient")
        verbose_name_plural = _("test recipients")
        constraints = [models.UniqueConstraint(fields=["audience", "external_id"], name="test_recipient_unique")]

    def __str__(self):
        return f"{self.get_audience_display()} {self.external_id} {self.name}".strip()


class BroadcastSource(models.TextChoices):
    LIST = "list", _("A list of external ids")
    SEGMENT = "segment", _("Everyone of the audience in the recipient directory")


class BroadcastStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    DONE = "done", _("Done")
    CANCELLED = "cancelled", _("Cancelled")
    FAILED = "failed", _("Failed")


class Broadcast(models.Model):
    """One message to a large audience (a list of ids, or a directory segment), written by a task
    in chunks (scenarios/fanout.py). The per-person record of the inbox part is the inbox row
    itself; provider channels get a delivery each in the outbox. Each chunk moves `cursor` and the
    counts in the transaction that writes its people, so a killed worker's chunk is redone whole
    and a finished one never again."""

    name = models.CharField(_("name"), max_length=100)
    template = models.ForeignKey(Template, verbose_name=_("template"), on_delete=models.PROTECT, related_name="+")
    data = models.JSONField(_("data"), default=dict, blank=True, help_text=_("What the template renders with."))
    channels = models.JSONField(_("channels"), default=list, help_text=_('e.g. ["inbox"] or ["inbox", "sms"]'))
    importance = models.CharField(
        _("importance"), max_length=16, choices=Importance.choices, default=Importance.TRANSACTIONAL
    )
    audience = models.CharField(_("audience"), max_length=16, choices=Audience.choices)
    source = models.CharField(_("audience from"), max_length=16, choices=BroadcastSource.choices)
    external_ids = models.JSONField(_("external ids"), default=list, blank=True, editable=False)
    segment_channel = models.CharField(
        _("only people reachable on"),
        max_length=32,
        choices=Channel.choices,
        blank=True,
        help_text=_("Segment: only directory entries with an address on this channel; empty: everyone."),
    )
    status = models.CharField(
        _("status"), max_length=16, choices=BroadcastStatus.choices, default=BroadcastStatus.QUEUED
    )
    total = models.PositiveIntegerField(_("people"), default=0)
    done = models.PositiveIntegerField(_("done"), default=0)
    skipped = models.PositiveIntegerField(
        _("skipped"), default=0, help_text=_("Turned every chosen channel off, or has no address on any.")
    )
    failed = models.PositiveIntegerField(_("failed"), default=0, help_text=_("In a chunk given up after errors."))
    # Where the next chunk starts: a position in external_ids, or the last directory entry's id.
    cursor = models.BigIntegerField(_("cursor"), default=0, editable=False)
    last_error = models.TextField(_("last error"), blank=True)
    created_by = models.CharField(_("created by"), max_length=150, blank=True)
    # Sent over the API: idempotent per client and key, like events.
    client = models.CharField(_("client"), max_length=64, blank=True)
    idempotency_key = models.CharField(_("idempotency key"), max_length=128, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    progress_at = models.DateTimeField(_("last progress"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("broadcast")
        verbose_name_plural = _("broadcasts")
        permissions = [("cancel_broadcast", _("Can cancel broadcasts"))]
        indexes = [
            # The resume scan: unfinished broadcasts whose worker went quiet.
            models.Index(fields=["progress_at"], condition=Q(status__in=["queued", "running"]), name="broadcast_open")
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["client", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="broadcast_unique_idempotency_key",
            )
        ]

    def __str__(self):
        return self.name
