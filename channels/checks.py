"""Content checks before sending: what each channel's provider would refuse."""

from .providers import backend_for


def content_problems(*, channel: str, content: dict) -> list[str]:
    backend = backend_for(channel)
    if backend is None:
        return [f"no backend for the channel {channel}"]
    return backend.problems(content)
