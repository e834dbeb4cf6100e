"""The embedded broker (ncfs://): a message file appears whole or not at all."""

import os

from kombu import Connection

import notifycenter.broker  # noqa: F401  (registers ncfs://)


def _connection(tmp_path):
    folder = tmp_path / "queue"
    folder.mkdir()
    return Connection(
        "ncfs://",
        transport_options={
            "data_folder_in": str(folder),
            "data_folder_out": str(folder),
            "control_folder": str(tmp_path / "control"),
            "polling_interval": 0.01,
        },
    )


def test_a_message_is_renamed_into_place_whole(tmp_path, monkeypatch):
    """kombu's own transport opens the final name and then writes, so a reader polling every
    10 ms could take an empty file; ours writes elsewhere and renames."""
    seen = []
    real_replace = os.replace

    def watching_replace(src, dst):
        seen.append((os.path.exists(dst), os.path.getsize(src) > 0, str(src).endswith(".part")))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", watching_replace)
    with _connection(tmp_path) as conn:
        queue = conn.SimpleQueue("whole")
        queue.put({"n": 1})
        assert seen == [(False, True, True)]  # the final name did not exist until it was complete
        assert queue.get(timeout=1).payload == {"n": 1}
        queue.close()


def test_a_half_written_file_is_not_taken(tmp_path):
    with _connection(tmp_path) as conn:
        queue = conn.SimpleQueue("partial")
        queue.put({"n": 2})
        # A writer in the middle of its message: the reader must skip it.
        (tmp_path / "queue" / "0_x.partial.msg.part").write_text('{"bod')
        assert queue.get(timeout=1).payload == {"n": 2}
        assert (tmp_path / "queue" / "0_x.partial.msg.part").exists()
        queue.close()
