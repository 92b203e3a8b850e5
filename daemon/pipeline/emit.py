"""Turns task results into events and decides which are worth publishing.

Captions and answers are published when they change, and at least every `publish.heartbeat_s`
so a subscriber that joins late learns the current state; prompt scores go through the
stream's trackers, which turn them into start / update / end phases. Times are the frame's
task clock (`Frame.task_time`).
"""
from typing import Mapping, Optional

from daemon.pipeline.frames import Frame
from daemon.pipeline.stream_state import StreamContext
from daemon.publish.events import AnswerEvent, CaptionEvent, Event, MatchEvent
from daemon.publish.snapshot import encode_snapshot


class Emitter:
    """Shared by the workers; holds no per-stream state of its own (that lives in StreamContext)."""

    def __init__(self, publisher, publish_settings) -> None:  # type: ignore[no-untyped-def]
        self._publisher = publisher
        self.heartbeat_s = float(publish_settings.heartbeat_s)
        self._snapshot = publish_settings.snapshot

    def _send(self, state: StreamContext, frame: Frame, event: Event) -> None:
        self._publisher.publish(event, jpeg=self._snapshot_of(state, frame), mono_time=frame.mono_time)

    def _snapshot_of(self, state: StreamContext, frame: Frame) -> Optional[bytes]:
        """JPEG of the frame for the third message part, encoded once per frame and only when an
        event of that frame is actually published (the worker holds the stream's lock)."""
        if not self._snapshot.enabled:
            return None
        if state.snapshot_frame is not frame:
            state.snapshot = encode_snapshot(frame.image, self._snapshot.max_side, self._snapshot.quality,
                                             max_bytes=self._snapshot.max_bytes)
            state.snapshot_frame = frame
        return state.snapshot

    def caption(self, state: StreamContext, frame: Frame, text: str) -> None:
        changed = text != state.last_caption
        if not changed and frame.task_time - state.last_caption_sent < self.heartbeat_s:
            return
        event = CaptionEvent.at_frame(frame, text=text, previous=state.last_caption if changed else None)
        self._send(state, frame, event)
        state.last_caption, state.last_caption_sent = text, frame.task_time

    def matches(self, state: StreamContext, frame: Frame, scores: Mapping[str, float]) -> None:
        for phase in state.trackers.update(scores, frame.wall_time):
            self._send(state, frame, MatchEvent.from_phase(frame, phase))

    def answers(self, state: StreamContext, frame: Frame, answers: Mapping[str, str]) -> None:
        texts = {q.id: q.text for q in state.config.questions}
        for qid, answer in answers.items():
            previous = state.last_answer.get(qid)
            changed = answer != previous
            if not changed and frame.task_time - state.last_answer_sent.get(qid, float("-inf")) < self.heartbeat_s:
                continue
            event = AnswerEvent.at_frame(
                frame, question=qid, text=texts.get(qid, qid), answer=answer, previous=previous if changed else None
            )
            self._send(state, frame, event)
            state.last_answer[qid], state.last_answer_sent[qid] = answer, frame.task_time

    def next_heartbeat(self, state: StreamContext) -> Optional[float]:
        """Task-clock time the next caption or answer heartbeat falls due (the scene gate must let
        a frame through then, else a static scene would delay it by up to max_skip_s); None when
        nothing was published yet (the first result is published whatever the gate)."""
        sent = [state.last_caption_sent] if state.config.caption.enabled else []
        sent += [state.last_answer_sent.get(q.id, float("-inf")) for q in state.config.questions]
        known = [t for t in sent if t != float("-inf")]
        return min(known) + self.heartbeat_s if known else None

    def end_matches(self, state: StreamContext, frame: Optional[Frame], wall_time: float) -> None:
        """End every active match of a stream that stops or ends at `wall_time` (now); a file
        read with `realtime: false` ends them at its last frame's time instead, since its frame
        times run ahead of the time of day (start + media time) and its matches started on them."""
        if frame is not None and frame.media_s is not None:
            wall_time = frame.wall_time
        for phase in state.trackers.end_all(wall_time):
            self._publisher.publish(MatchEvent.from_phase(frame, phase, stream=state.name))
