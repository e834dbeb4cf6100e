"""An H5 page served from the apps' own host (another origin than the center's) reads the inbox
in Chromium: the count over REST and the event stream through fetch() with the token in its
header (EventSource cannot send one), once the hospital lists that origin
(INBOX_CORS_ALLOWED_ORIGINS). Without the listing the browser refuses both."""

import http.server
import threading
import time

import pytest

from inbox.tests.live_clients import Server
from inbox.tests.test_live import put, token

pytestmark = pytest.mark.django_db(transaction=True)

PAGE = """<!doctype html><meta charset="utf-8"><title>H5</title><script>
window.seen = {count: null, events: [], error: null};
async function readInbox(api, token) {
  try {
    const headers = {Authorization: `Bearer ${token}`};
    window.seen.count = await (await fetch(`${api}/api/v1/inbox/unread-count`, {headers})).json();
    const stream = await fetch(`${api}/api/v1/inbox/stream?platform=h5`, {headers});
    const reader = stream.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\\n\\n")) >= 0) {
        const data = buffer.slice(0, end).split("\\n").find((l) => l.startsWith("data:"));
        buffer = buffer.slice(end + 2);
        if (data) window.seen.events.push(JSON.parse(data.slice(5)).type);
      }
    }
  } catch (e) { window.seen.error = String(e); }
}
</script>"""


class PageServer(http.server.ThreadingHTTPServer):
    """The apps' H5 host: one page, on its own port (its own origin)."""

    def __init__(self):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = PAGE.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


def _wait(page, condition: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not page.evaluate(condition):
        assert time.monotonic() < deadline, f"not within {seconds} s: {condition}"
        time.sleep(0.05)


@pytest.mark.parametrize("listed", [True, False])
def test_an_h5_page_on_its_own_host_reads_the_count_and_the_stream(browser, settings, listed):
    pages = PageServer()
    settings.CORS_ALLOWED_ORIGINS = [pages.origin] if listed else []
    put()
    with Server() as api:
        context = browser.new_context()
        page = context.new_page()
        page.goto(pages.origin)
        # Started, not awaited: the stream never ends.
        page.evaluate(f"() => {{ readInbox('http://127.0.0.1:{api.port}', '{token()}'); }}")
        if not listed:
            _wait(page, "window.seen.error !== null")
            assert page.evaluate("window.seen.count") is None  # the browser kept the answer from the page
            context.close()
            pages.shutdown()
            return
        _wait(page, "window.seen.events.includes('ready')")
        assert page.evaluate("window.seen.count.total") == 1
        put(start=1)
        _wait(page, "window.seen.events.includes('message.created')")
        assert page.evaluate("window.seen.error") is None
        context.close()
    pages.shutdown()
