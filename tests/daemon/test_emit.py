"""Emitter: captions and answers publish on change and every heartbeat, and again after an outage
even if unchanged; matches go through the trackers; a snapshot is encoded once per frame."""
import numpy as np

from daemon.pipeline.frames import Frame
from tests.daemon.helpers_pipeline import IMAGE, Recorder, context, emitter, frame, settings


def test_a_caption_publishes_on_change_and_on_heartbeat() -> None:
    cfg = settings(heartbeat_s=10.0)
    publisher = Recorder()
    state, _ = context(cfg)
    emit = emitter(cfg, publisher)
    for t, text in ((0, "a"), (1, "a"), (2, "b"), (11, "b"), (12.5, "b")):
        emit.caption(state, frame(int(t), float(t)), text)
    got = [(e.text, e.previous, e.pts_s) for e in publisher.of("caption")]
    assert got == [("a", None, 0.0), ("b", "a", 2.0), ("b", None, 12.5)], "a heartbeat has previous null"


def test_answers_publish_per_question_on_change_and_heartbeat() -> None:
    cfg = settings(heartbeat_s=5.0, questions=[{"id": "q1", "text": "is it red?"}, {"id": "q2", "text": "how many?"}])
    publisher = Recorder()
    state, _ = context(cfg)
    emit = emitter(cfg, publisher)
    emit.answers(state, frame(0, 0.0), {"q1": "yes", "q2": "2"})
    emit.answers(state, frame(1, 1.0), {"q1": "yes", "q2": "3"})
    emit.answers(state, frame(6, 6.0), {"q1": "yes", "q2": "3"})
    got = [(e.question, e.text, e.answer, e.previous, e.frame) for e in publisher.of("answer")]
    assert got == [("q1", "is it red?", "yes", None, 0), ("q2", "how many?", "2", None, 0),
                   ("q2", "how many?", "3", "2", 1), ("q1", "is it red?", "yes", None, 6),
                   ("q2", "how many?", "3", None, 6)]


def test_back_online_resends_the_caption_and_answers_even_if_unchanged() -> None:
    """Defect: after an outage a subscriber waited up to heartbeat_s for the current state."""
    cfg = settings(heartbeat_s=60.0)
    publisher = Recorder()
    state, _ = context(cfg)
    emit = emitter(cfg, publisher)
    emit.caption(state, frame(0, 0.0), "a cat")
    emit.answers(state, frame(0, 0.0), {"what": "cat"})
    emit.caption(state, frame(1, 1.0), "a cat")
    emit.answers(state, frame(1, 1.0), {"what": "cat"})
    assert len(publisher.events) == 2
    state.back_online()
    assert state.next_caption == float("-inf") and state.next_question["what"] == float("-inf")
    emit.caption(state, frame(2, 2.0), "a cat")
    emit.answers(state, frame(2, 2.0), {"what": "cat"})
    assert [(e.TYPE, e.frame) for e in publisher.events[2:]] == [("caption", 2), ("answer", 2)]


def test_matches_follow_the_tracker_phases() -> None:
    cfg = settings()
    publisher = Recorder()
    state, _ = context(cfg)
    emit = emitter(cfg, publisher)
    emit.matches(state, frame(0, 0.0), {"thing": 0.9})
    emit.matches(state, frame(1, 1.0), {"thing": 0.9})
    for t in range(2, 6):
        emit.matches(state, frame(t, float(t)), {"thing": 0.0})
    assert [e.phase for e in publisher.of("match")] == ["start", "end"]
    for t in range(6, 10):
        emit.matches(state, frame(t, float(t)), {"thing": 0.9})
    emit.end_matches(state, frame(9, 9.0), 1010.0)
    assert [e.phase for e in publisher.of("match")] == ["start", "end", "start", "end"]


def test_a_snapshot_is_encoded_once_per_frame_and_only_when_sent() -> None:
    cfg = settings(snapshot=True, heartbeat_s=100.0)
    publisher = Recorder()
    state, _ = context(cfg)
    emit = emitter(cfg, publisher)
    image = np.full((90, 160, 3), 128, np.uint8)
    f0 = frame(0, 0.0, image)
    emit.caption(state, f0, "a")
    emit.answers(state, f0, {"what": "x"})
    assert publisher.jpegs[0] is not None and publisher.jpegs[0] is publisher.jpegs[1]
    assert publisher.jpegs[0][:2] == b"\xff\xd8"
    emit.caption(state, frame(1, 1.0, image), "a")  # unchanged: nothing sent, nothing encoded
    assert state.snapshot_frame is f0


def test_a_failed_send_leaves_the_state_to_try_again() -> None:
    cfg = settings(heartbeat_s=100.0)
    publisher = Recorder(fail_on="caption")
    state, _ = context(cfg)
    emit = emitter(cfg, publisher)
    try:
        emit.caption(state, frame(0, 0.0), "a")
    except RuntimeError:
        pass
    emit.caption(state, frame(1, 1.0), "a")
    assert [e.frame for e in publisher.of("caption")] == [1]


def test_next_heartbeat_is_the_earliest_due_resend() -> None:
    cfg = settings(heartbeat_s=10.0)
    publisher = Recorder()
    state, _ = context(cfg)
    emit = emitter(cfg, publisher)
    assert emit.next_heartbeat(state) is None
    emit.caption(state, frame(0, 3.0), "a")
    emit.answers(state, frame(1, 5.0), {"what": "x"})
    assert emit.next_heartbeat(state) == 13.0


def test_media_time_drives_heartbeats_of_a_file_read_fast() -> None:
    cfg = settings(heartbeat_s=10.0)
    publisher = Recorder()
    state, _ = context(cfg)
    emit = emitter(cfg, publisher)
    for i in range(25):  # 25 media seconds read in 25 ms
        emit.caption(state, frame(i, 0.001 * i, media=float(i)), "same")
    assert [e.frame for e in publisher.of("caption")] == [0, 10, 20]


def test_an_ended_fast_read_file_ends_its_matches_on_its_own_clock() -> None:
    """Defect: end_matches used the time of day, which a file read faster than real time (frame
    times = start + media time) is far behind: the end's duration_s was 0 and it came before
    `started`."""
    cfg = settings()
    publisher = Recorder()
    state, _ = context(cfg)
    emit = emitter(cfg, publisher)

    def media_frame(index: int, media: float, mono: float) -> Frame:
        return Frame("cam", index, media, 1000.0 + media, mono, IMAGE, {}, media)

    emit.matches(state, media_frame(0, 0.0, 0.0), {"thing": 0.9})
    last = media_frame(50, 50.0, 0.5)  # 50 s of video read in 0.5 s
    emit.matches(state, last, {"thing": 0.9})
    emit.end_matches(state, last, 1000.5)  # the time of day at the end
    end = publisher.of("match")[-1]
    assert end.phase == "end"
    assert end.duration_s == 50.0
