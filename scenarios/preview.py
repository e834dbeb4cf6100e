"""What a template will say on each bound channel, what each channel's provider would refuse in
it, and a test send of it to a chosen person: the operations console's preview and test send."""

import secrets
from dataclasses import dataclass, field

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from channels.checks import content_problems
from channels.models import Channel, Delivery
from channels.providers.sms import CODE_SLOT
from channels.services import DeliveryRequest, deliveries_create, recipients_resolve

from .models import ChannelBinding, Template, TestRecipient
from .rendering import RenderError, render_link, render_mapping, render_text, undefined_variable
from .services import render_context

SAMPLE_CODE = "123456"  # what a verification-code template shows in a preview instead of a code
TEST_MARK = "【测试】"  # before a test send's title, so whoever reads it knows


@dataclass
class ChannelPreview:
    channel: str
    content: dict
    problems: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return Channel(self.channel).label


PLATFORMS = {"mini_program": gettext_lazy("Mini program"), "h5": gettext_lazy("H5 page"), "app": gettext_lazy("App")}


@dataclass
class TemplatePreview:
    title: str = ""
    body: str = ""
    link: dict = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # field → what is wrong (missing variable, …)
    channels: list[ChannelPreview] = field(default_factory=list)

    @property
    def link_forms(self) -> list[tuple[str, str]]:
        """The link's form on each platform its reader uses, under the platform's name."""
        return [(PLATFORMS[k], self.link[k]) for k in PLATFORMS if self.link.get(k)]

    @property
    def error_lines(self) -> list[str]:
        """What keeps the title, body or link from rendering, one line each."""
        return [render_problem(f, m) for f, m in self.errors.items()]

    @property
    def problems(self) -> list[str]:
        """Everything that keeps the template from being saved, one line each."""
        return self.error_lines + [f"{c.label}: {p}" for c in self.channels for p in c.problems]


def render_problem(field: str, message: str) -> str:
    """A render error as one line for the console: a missing variable named in the reader's
    language, title and body under their labels; any other error in Jinja's own words."""
    label = Template._meta.get_field(field).verbose_name if field in ("title", "body") else field
    name = undefined_variable(message)
    if name:
        return _("%(field)s: the variable %(name)s is not in the data") % {"field": label, "name": name}
    return f"{label}: {message}"


def sample_data_for(template: Template) -> dict:
    """The sample payload of the first scenario whose rule uses this template."""
    rule = template.rules.select_related("scenario").order_by("id").first() if template.pk else None
    return dict(rule.scenario.sample_data or {}) if rule else {}


def template_preview(*, template: Template, bindings: list[ChannelBinding], data: dict) -> TemplatePreview:
    """Render without storing anything; every error is collected, none raised."""
    context = render_context(template, data)
    preview = TemplatePreview()
    for name in ("title", "body"):
        try:
            setattr(preview, name, render_text(getattr(template, name), context, field=name))
        except RenderError as err:
            preview.errors[err.field] = err.message
    try:
        preview.link = render_link(template.link, context, audience=template.audience)
    except RenderError as err:
        preview.errors[err.field] = err.message
    for binding in bindings:
        content = {
            "title": preview.title,
            "body": preview.body,
            "category": template.category,
            "link": preview.link,
            "template_id": binding.external_template_id,
            "params": {},
            "options": binding.options or {},
        }
        problems = []
        try:
            content["params"] = render_mapping(binding.params or {}, context, field="params")
        except RenderError as err:
            problems.append(render_problem(err.field, err.message))
        if template.is_verification_code and binding.channel == Channel.SMS:
            if not any(CODE_SLOT in str(v) for v in content["params"].values()):
                problems.append("a verification-code template must put {{ code }} in a parameter")
            content["params"] = {k: str(v).replace(CODE_SLOT, SAMPLE_CODE) for k, v in content["params"].items()}
        if not problems:
            problems = content_problems(channel=binding.channel, content=content)
        preview.channels.append(ChannelPreview(binding.channel, content, problems))
    return preview


class TestSendRefused(Exception):
    pass


def template_test_send(*, template: Template, data: dict, external_id: str, channels: list[str]) -> list[Delivery]:
    """Send the template, rendered from `data`, to one configured test recipient over the chosen
    bound channels, through the ordinary outbox, its title marked 【测试】. The deliveries carry
    the template's code, so they prove a binding in the coverage matrix; their idempotency key
    starts with `test:`, which keeps them out of the day's volumes and rates."""
    bindings = [b for b in template.bindings.filter(enabled=True).select_related("account") if b.channel in channels]
    if not bindings:
        raise TestSendRefused(_("Choose at least one enabled channel of this template."))
    if template.is_verification_code and any(b.channel == Channel.SMS for b in bindings):
        raise TestSendRefused(_("Verification codes go out only through POST /api/v1/otp, never as a test."))
    if not TestRecipient.objects.filter(audience=template.audience, external_id=external_id).exists():
        raise TestSendRefused(
            _("Test sends go only to test recipients (Scenarios → Test recipients); %(id)s is not one.")
            % {"id": external_id}
        )
    preview = template_preview(template=template, bindings=bindings, data=data)
    if preview.problems:
        raise TestSendRefused("; ".join(preview.problems))
    person = recipients_resolve(named={template.audience: [external_id]})[(template.audience, external_id)]
    for item in preview.channels:
        item.content["title"] = TEST_MARK + item.content["title"]
    run = secrets.token_hex(6)
    requests = [
        DeliveryRequest(
            channel=item.channel,
            recipient=person,
            content=item.content,
            idempotency_key=f"test:{template.code}:{item.channel}:{run}",
            template_code=template.code,
            account=binding.account,
        )
        for binding, item in zip(bindings, preview.channels, strict=True)
    ]
    return deliveries_create(requests=requests)
