"""Home Assistant MQTT discovery: one device per stream, one entity per prompt, question, caption...

Discovery topic: `<discovery_prefix>/<component>/<node_id>/<object_id>/config` with node_id
`blipd_<box>_<stream>` (box = the daemon's `name`, "blipd" when it has none), so unique ids are
stable across restarts and two boxes' streams of the same name stay apart. An empty retained
payload on the same topic removes the entity. Every entity is available only while both the bridge
(its last will) and the stream are online (`availability_mode: all`).
"""
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from daemon.config.yaml_loader import load_yaml

HA_STATE_MAX = 255
"""Home Assistant refuses sensor states longer than this; captions and answers are cut to fit."""


@dataclass
class StreamEntities:
    """What one stream shows in Home Assistant: prompt id -> text, question id -> text, snapshot."""

    prompts: Dict[str, str] = field(default_factory=dict)
    questions: Dict[str, str] = field(default_factory=dict)
    snapshot: bool = False


def node_id(box: str, stream: str) -> str:
    return "blipd_%s_%s" % (box, stream)


class Discovery:
    """Builds discovery (topic, payload) pairs for one bridge's topic layout."""

    def __init__(self, discovery_prefix: str, prefix: str, bridge_availability: str) -> None:
        self.discovery_prefix = discovery_prefix
        self.prefix = prefix
        self.bridge_availability = bridge_availability

    def topic(self, component: str, box: str, stream: str, object_id: str) -> str:
        return "%s/%s/%s/%s/config" % (self.discovery_prefix, component, node_id(box, stream), object_id)

    def _base(self, box: str, stream: str, object_id: str, name: str) -> Dict[str, Any]:
        unique = "%s_%s" % (node_id(box, stream), object_id)
        return {
            "name": name,
            "unique_id": unique,
            "object_id": unique,
            "availability": [{"topic": self.bridge_availability},
                             {"topic": "%s/%s/availability" % (self.prefix, stream)}],
            "availability_mode": "all",
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": {"identifiers": [node_id(box, stream)], "name": "%s %s" % (box, stream),
                       "manufacturer": "blipd", "model": "BLIP video stream"},
            "origin": {"name": "blipd bridge"},
        }

    def stream_entities(self, box: str, stream: str, entities: StreamEntities) -> List[Tuple[str, bytes]]:
        """Every discovery message of a stream: caption, state, prompts, questions, snapshot."""
        out = [self.caption(box, stream), self.state(box, stream)]
        out += [self.prompt(box, stream, pid, text) for pid, text in sorted(entities.prompts.items())]
        out += [self.question(box, stream, qid, text) for qid, text in sorted(entities.questions.items())]
        if entities.snapshot:
            out.append(self.snapshot(box, stream))
        return out

    def caption(self, box: str, stream: str) -> Tuple[str, bytes]:
        payload = self._base(box, stream, "caption", "Caption")
        payload.update(state_topic="%s/%s/state/caption" % (self.prefix, stream), icon="mdi:text-box-outline",
                       json_attributes_topic="%s/%s/caption" % (self.prefix, stream))
        return self.topic("sensor", box, stream, "caption"), _dump(payload)

    def state(self, box: str, stream: str) -> Tuple[str, bytes]:
        payload = self._base(box, stream, "stream_state", "Stream state")
        payload.update(state_topic="%s/%s/state/stream" % (self.prefix, stream), icon="mdi:cctv",
                       entity_category="diagnostic")
        return self.topic("sensor", box, stream, "stream_state"), _dump(payload)

    def prompt(self, box: str, stream: str, prompt: str, text: str) -> Tuple[str, bytes]:
        payload = self._base(box, stream, "prompt_" + prompt, text or prompt)
        payload.update(state_topic="%s/%s/state/prompt/%s" % (self.prefix, stream, prompt),
                       payload_on="ON", payload_off="OFF", device_class="occupancy")
        return self.topic("binary_sensor", box, stream, "prompt_" + prompt), _dump(payload)

    def question(self, box: str, stream: str, question: str, text: str) -> Tuple[str, bytes]:
        payload = self._base(box, stream, "question_" + question, text or question)
        payload.update(state_topic="%s/%s/state/answer/%s" % (self.prefix, stream, question),
                       icon="mdi:comment-question-outline")
        return self.topic("sensor", box, stream, "question_" + question), _dump(payload)

    def snapshot(self, box: str, stream: str) -> Tuple[str, bytes]:
        payload = self._base(box, stream, "snapshot", "Snapshot")
        payload.update(image_topic="%s/%s/snapshot" % (self.prefix, stream), content_type="image/jpeg")
        return self.topic("image", box, stream, "snapshot"), _dump(payload)

    def owned_by(self, topic: str, box: str) -> bool:
        """Whether a discovery config topic belongs to a stream of `box` (so we may remove it)."""
        parts = topic.split("/")
        return (len(parts) >= 4 and parts[-1] == "config"
                and parts[-3].startswith("blipd_%s_" % box)
                and "/".join(parts[:-4]) == self.discovery_prefix)


def _dump(payload: Dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")


class _AnyEnv(Dict[str, str]):
    """The environment, with a stand-in for unset variables: the bridge reads names and ids from
    the daemon's config, not its camera passwords, which its own environment need not hold."""

    def get(self, key: str, default: Optional[str] = None) -> Optional[str]:  # type: ignore[override]
        return os.environ.get(key, "unset")


def read_daemon_config(path: Path) -> Tuple[str, Dict[str, StreamEntities]]:
    """(box name, stream -> entities) from a daemon config; ConfigError names file:line."""
    loaded = load_yaml(path, _AnyEnv())
    data = loaded.data
    box = str(data.get("name") or "blipd")
    publish = data.get("publish") if isinstance(data.get("publish"), dict) else {}
    snap = publish.get("snapshot") if isinstance(publish.get("snapshot"), dict) else {}
    snapshots = bool(snap.get("enabled", False))
    streams: Dict[str, StreamEntities] = {}
    for entry in data.get("streams") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        entities = StreamEntities(snapshot=snapshots)
        for item in entry.get("prompts") or []:
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                entities.prompts[item["id"]] = str(item.get("text") or item["id"])
        for item in entry.get("questions") or []:
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                entities.questions[item["id"]] = str(item.get("text") or item["id"])
        streams[entry["name"]] = entities
    return box, streams
