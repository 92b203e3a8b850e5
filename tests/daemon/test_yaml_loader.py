"""The strict YAML loader's line tracking: every mapping key and sequence item is located, so a
config error can name FILE:LINE:key; missing keys point at their parent."""
from pathlib import Path

import pytest

from daemon.config.yaml_loader import format_error, format_key_path, line_of, load_yaml
from daemon.errors import ConfigError

DOC = """\
# a comment line
model:
  package: models/demo   # trailing comment

streams:
  - name: gate
    url: "rtsp://cam/1"
    prompts:
      - {id: person, text: a person}
      - id: car
        text: >
          a car
          on the drive
  - {name: yard, url: /srv/yard.mp4}
"""


def write(tmp_path: Path, text: str, newline: str = "\n") -> Path:
    path = tmp_path / "blipd.yaml"
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return path


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_every_key_and_item_has_its_line_and_column(tmp_path: Path, newline: str) -> None:
    loaded = load_yaml(write(tmp_path, DOC, newline), {})
    where = loaded.locations
    assert where[()] == (2, 1)
    assert where[("model",)] == (2, 1)
    assert where[("model", "package")] == (3, 3)
    assert where[("streams",)] == (5, 1)
    assert where[("streams", 0)] == (6, 5)
    assert where[("streams", 0, "name")] == (6, 5)
    assert where[("streams", 0, "url")] == (7, 5)
    assert where[("streams", 0, "prompts", 0)] == (9, 9)
    assert where[("streams", 0, "prompts", 0, "text")] == (9, 22)
    assert where[("streams", 0, "prompts", 1, "text")] == (11, 9)
    assert where[("streams", 1, "url")] == (14, 18)
    assert loaded.data["streams"][0]["prompts"][1]["text"] == "a car on the drive\n"


def test_a_missing_key_points_at_its_closest_parent(tmp_path: Path) -> None:
    where = load_yaml(write(tmp_path, DOC), {}).locations
    assert line_of(where, ("streams", 1, "caption", "every_s")) == 14
    assert line_of(where, ("streams", 0, "prompts", 1, "exit")) == 10
    assert line_of(where, ("metrics", "port")) == 2  # the document's first line
    assert line_of({}, ("x",)) is None


def test_key_paths_and_error_lines_read_like_the_config() -> None:
    assert format_key_path(("streams", 1, "prompts", 0, "exit")) == "streams[1].prompts[0].exit"
    assert format_key_path(()) == ""
    assert format_error("b.yaml", 7, ("streams", 0, "url"), "bad") == "b.yaml:7: streams[0].url: bad"
    assert format_error("b.yaml", None, (), "cannot read") == "b.yaml: cannot read"


def test_a_byte_order_mark_does_not_shift_lines(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfmodel:\n  package: m\n")
    assert load_yaml(path, {}).locations[("model", "package")] == (2, 3)


def test_variables_expand_and_keep_their_key_lines(tmp_path: Path) -> None:
    text = "a: ${ONE}\nb: ${UNSET:-fallback}\nc: $${LITERAL}\nd: x${ONE}y${ONE}\n"
    loaded = load_yaml(write(tmp_path, text), {"ONE": "1"})
    assert loaded.data == {"a": "1", "b": "fallback", "c": "${LITERAL}", "d": "x1y1"}
    assert loaded.locations[("d",)] == (4, 1)


def test_collected_problems_keep_their_lines_and_leave_the_rest(tmp_path: Path) -> None:
    text = "a: 1\nb: ${NOPE}\na: 2\nc: !!binary aGk=\nd:\n  - ok\n  - \"\\ud800\"\n"
    path = write(tmp_path, text)
    loaded = load_yaml(path, {}, collect=True)
    assert [(line, format_key_path(key)) for line, key, _ in loaded.problems] == [
        (2, "b"), (3, "a"), (4, "c"), (7, "d[1]")]
    assert loaded.data["a"] == 1 and loaded.data["d"] == ["ok", None]
    with pytest.raises(ConfigError) as caught:
        load_yaml(path, {})
    assert caught.value.lines == tuple(loaded.problem_lines())
    assert caught.value.lines[0] == "%s:2: b: environment variable NOPE is not set" % path
