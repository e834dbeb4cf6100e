"""README's browser example of the live inbox, as written there, in Chromium: it connects to the
ASGI server, authenticates with its first frame, shows the badge, adds the new message to the
list, and after the connection drops resumes from the last event id it kept, each message once."""

import re
import time
from pathlib import Path

import pytest

from inbox.tests.live_clients import Server
from inbox.tests.test_live import put, token

pytestmark = pytest.mark.django_db(transaction=True)

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_snippet() -> str:
    text = README.read_text()
    after = text.split("In a browser (H5), a WebSocket with the token in the first frame", 1)[1]
    return re.search(r"```js\n(.*?)```", after, re.S).group(1)


# What the page around the snippet provides: the functions it calls, recording what they saw.
PAGE = """
window.seen = {badge: [], list: [], reloads: 0, sockets: []};
const Real = WebSocket;
window.WebSocket = function (url) { const ws = new Real(url); window.seen.sockets.push(ws); return ws; };
Object.assign(window.WebSocket, Real);
function showBadge(n) { window.seen.badge.push(n); }
function prependToList(m) { window.seen.list.unshift(m.id); }
function reloadList() { window.seen.reloads += 1; }
function refreshToken() { return Promise.resolve(%(token)s); }
function getInboxToken() { return Promise.resolve(%(token)s); }
(async () => {
%(snippet)s
})();
"""


def _wait(page, condition: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not page.evaluate(condition):
        assert time.monotonic() < deadline, f"not within {seconds} s: {condition}"
        time.sleep(0.05)


def test_the_readme_example_receives_messages_and_resumes_after_a_drop(browser, settings):
    settings.INBOX_LIVE = {**settings.INBOX_LIVE, "HEARTBEAT_SECONDS": 5}
    with Server() as server:
        # The H5 page is the hospital's own, served with its own policy; here it borrows the
        # server's origin, whose pages carry the console's (no inline script): not the page's.
        context = browser.new_context(bypass_csp=True)
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{server.port}/healthz")  # the page's origin: the server's
        page.evaluate("localStorage.clear()")
        page.add_script_tag(content=PAGE % {"token": f'"{token()}"', "snippet": readme_snippet()})
        _wait(page, "window.seen.badge.length >= 1")  # `ready` with the counts

        (first,) = put()
        _wait(page, f"window.seen.list.includes({first.pk})")
        assert page.evaluate("window.seen.badge.at(-1)") == 1

        # The connection drops (a network change); while it is down two messages arrive.
        page.evaluate("window.seen.sockets.at(-1).close()")
        second, third = put(n=2, start=1)
        _wait(page, f"window.seen.list.includes({third.pk})", seconds=15)  # reconnects after 1-5 s
        assert page.evaluate("window.seen.list") == [third.pk, second.pk, first.pk]  # each once, in order
        assert page.evaluate("window.seen.badge.at(-1)") == 3
        assert page.evaluate("Number(localStorage.getItem('inboxLastId'))") >= 3
        context.close()
