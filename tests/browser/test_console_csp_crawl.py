"""The console's Content-Security-Policy, crawled: every console page a superuser reaches from the
index by its links (lists, a change page and its history, add pages, each list's export page,
each object's delete confirmation) renders with no `securitypolicyviolation`, not only the kinds
of page test_console_csp.py names (one page of each kind per model)."""

import re
from urllib.parse import urldefrag, urlsplit

import pytest

from tests.browser.test_console_csp import admin_page, violations  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

SKIPPED = ("/admin/logout/", "/admin/jsi18n/", "/admin/r/")
PAGES_MAX = 400


def console_links(page) -> list[str]:
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map((a) => a.href)")
    found = []
    for href in hrefs:
        url = urldefrag(href).url
        parts = urlsplit(url)
        if parts.netloc != urlsplit(page.base).netloc or not parts.path.startswith("/admin/"):
            continue
        if parts.path.startswith(SKIPPED):
            continue
        found.append(url)
    return found


def test_every_console_page_reached_by_a_link_renders_without_a_policy_violation(admin_page):  # noqa: F811
    page = admin_page
    seen, queue, refused, failed = set(), [f"{page.base}/admin/"], {}, {}
    while queue and len(seen) < PAGES_MAX:
        url = queue.pop(0)
        # One page of each kind: a list's filters and orderings are its own page, and one object's
        # change, history or delete page stands for every object of that model.
        key = re.sub(r"/\d+/", "/<id>/", urlsplit(url).path)
        if key in seen:
            continue
        seen.add(key)
        response = page.goto(url)
        if response is None or response.status >= 400:
            failed[key] = response.status if response else None
            continue
        page.wait_for_load_state("load")
        if found := violations(page):
            refused[key] = found
        queue += console_links(page)
    print(f"{len(seen)} console pages crawled; not 200: {failed}")
    assert refused == {}
