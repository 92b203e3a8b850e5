"""Turns task results into events and decides which are worth publishing.

Captions and answers are published when they change, and at least every `publish.heartbeat_s`
so a subscriber that joins late learns the current state; prompt scores go through the
stream's trackers, which turn them into start / update / end phases.
"""
from typing import Mapping, Optional

from daemon.publish.events import AnswerEvent, CaptionEvent, Event, MatchEvent
from daemon.pipeline.frames import Frame
from daemon.publish.snapshot import encode_snapshot
from daemon.pipeline.stream_state import StreamState


class Emitter:
    """Shared by the workers; holds no per-stream state of its own (that lives in StreamState)."""

    def __init__(self, publisher, publish_settings) -> None:  # type: ignore[no-untyped-def]
        self._publisher = publisher
        self._heartbeat_s = float(publish_settings.heartbeat_s)
        self._snapshot = publish_settings.snapshot

    def _send(self, state: StreamState, frame: Frame, event: Event) -> None:
        self._publisher.publish(event, jpeg=self._snapshot_of(state, frame), mono_time=frame.mono_time)

    def _snapshot_of(self, state: StreamState, frame: Frame) -> Optional[bytes]:
        """JPEG of the frame for the third message part, encoded once per frame and only when an
        event of that frame is actually published (the worker holds the stream's lock)."""
        if not self._snapshot.enabled:
            return None
        if state.snapshot_frame is not frame:
            state.snapshot = encode_snapshot(frame.image, self._snapshot.max_side, self._snapshot.quality)
            state.snapshot_frame = frame
        return state.snapshot

    def caption(self, state: StreamState, frame: Frame, text: str) -> None:
        changed = text != state.last_caption
        if not changed and frame.mono_time - state.last_caption_sent < self._heartbeat_s:
            return
        event = CaptionEvent.at_frame(frame, text=text, previous=state.last_caption if changed else None)
        state.last_caption, state.last_caption_sent = text, frame.mono_time
        self._send(state, frame, event)

    def matches(self, state: StreamState, frame: Frame, scores: Mapping[str, float]) -> None:
        for phase in state.trackers.update(scores, frame.wall_time):
            self._send(state, frame, MatchEvent.from_phase(frame, phase))

    def answers(self, state: StreamState, frame: Frame, answers: Mapping[str, str]) -> None:
        texts = {q.id: q.text for q in state.config.questions}
        for qid, answer in answers.items():
            previous = state.last_answer.get(qid)
            changed = answer != previous
            if not changed and frame.mono_time - state.last_answer_sent.get(qid, float("-inf")) < self._heartbeat_s:
                continue
            event = AnswerEvent.at_frame(
                frame, question=qid, text=texts.get(qid, qid), answer=answer, previous=previous if changed else None
            )
            state.last_answer[qid], state.last_answer_sent[qid] = answer, frame.mono_time
            self._send(state, frame, event)

    def end_matches(self, state: StreamState, frame: Optional[Frame], wall_time: float) -> None:
        """End every active match of a stream that stops or ends (the last frame, if any, gives the time)."""
        for phase in state.trackers.end_all(wall_time):
            self._publisher.publish(MatchEvent.from_phase(frame, phase, stream=state.name))
