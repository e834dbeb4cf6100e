"""`/r/<token>`: a tracked link followed (channels/clicks.py records it), forwarded to the page.

Only to the delivery's own link, and only when that link was rendered from a link target of the
catalog: a forged token, a delivery without a link, or a target no longer in the catalog is 404.
"""

from django.http import Http404, HttpResponseRedirect

from channels.clicks import click_follow
from scenarios.models import LinkTarget


def follow(request, token: str):
    found = click_follow(token=token)
    if found is None:
        raise Http404("No such link.")
    delivery, platform = found
    link = (delivery.content or {}).get("link") or {}
    url = link.get(platform, "")
    if not url or not LinkTarget.objects.filter(code=link.get("target", "")).exists():
        raise Http404("No such link.")
    if platform == "h5" and not url.startswith(("https://", "http://", "/")):
        raise Http404("No such link.")
    return HttpResponseRedirect(url)
