"""blip/package_seed.py: a manifest for a folder of the seed's bmodels (files as downloaded)."""
import sys

import pytest
import yaml

from blip.errors import PackageError
from blip.package import ModelPackage
from blip.package_seed import package_seed
from tests.sail.onnx_graphs import make_cap, make_itm

pytestmark = pytest.mark.sail

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "picture", "of", "dog", "cat"]
NAMES = ["blip_cap", "blip_itm", "blip_vqa_venc", "blip_vqa_tenc", "blip_vqa_tdec"]


def seed_folder(root, chip="bm1684x", names=NAMES, in_chip_dir=True, tokenizer="bert-base-uncased"):
    root.mkdir(parents=True, exist_ok=True)
    where = root / chip.upper() if in_chip_dir else root
    where.mkdir(exist_ok=True)
    for name in names:
        (where / ("%s_%s_f32_1b.bmodel" % (name, chip))).write_bytes(name.encode() * 100)
    if tokenizer:
        (root / tokenizer).mkdir()
        (root / tokenizer / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    return root


@pytest.fixture
def without_sail(monkeypatch):
    monkeypatch.setitem(sys.modules, "sophon.sail", None)  # import fails: the seed's sizes are used


def test_full_seed_folder_becomes_a_loadable_package(tmp_path, without_sail):
    root = seed_folder(tmp_path / "models")
    (root / "BM1684X" / "blip_cap_bm1684x_f16_1b.bmodel").write_bytes(b"half")  # F32 wins, as published
    manifest = package_seed(root, "BM1684X")
    assert manifest == root / "manifest.yaml"
    doc = yaml.safe_load(manifest.read_text())
    assert doc["name"] == "blip-seed-bm1684x" and doc["tokenizer"] == "bert-base-uncased"
    assert doc["tasks"]["caption"]["graphs"]["cap"]["file"] == "BM1684X/blip_cap_bm1684x_f32_1b.bmodel"
    package = ModelPackage.load(str(root))  # verifies every sha256
    assert set(package.tasks) == {"caption", "match", "answer"}
    assert {t.backend for t in package.tasks.values()} == {"sail"} and {t.layout for t in package.tasks.values()} == {"seed"}
    assert [package.task(t).image_size for t in ("caption", "match", "answer")] == [384, 384, 480]
    assert package.task("answer").settings["bos_token_id"] == len(VOCAB)  # [DEC] appended to the vocabulary
    assert set(package.task("answer").graphs) == {"venc", "tenc", "tdec"}


def test_only_the_tasks_present_and_files_in_the_folder_itself(tmp_path, without_sail):
    root = seed_folder(tmp_path / "models", chip="bm1688", names=["blip_itm"], in_chip_dir=False, tokenizer="tokenizer")
    doc = yaml.safe_load(package_seed(root, "bm1688").read_text())
    assert list(doc["tasks"]) == ["match"]
    assert doc["tasks"]["match"]["graphs"]["itm"]["file"] == "blip_itm_bm1688_f32_1b.bmodel"


def test_problems_are_one_line_package_errors(tmp_path, without_sail):
    with pytest.raises(PackageError, match="task answer is incomplete: missing blip_vqa_tdec_bm1684x_f32_1b.bmodel"):
        package_seed(seed_folder(tmp_path / "a", names=NAMES[:4]), "bm1684x")
    with pytest.raises(PackageError, match="no seed bmodel for bm1684x"):
        package_seed(seed_folder(tmp_path / "b", chip="bm1684"), "bm1684x")
    with pytest.raises(PackageError, match="no tokenizer"):
        package_seed(seed_folder(tmp_path / "c", tokenizer=None), "bm1684x")
    with pytest.raises(PackageError, match="chip 'bm9999'"):
        package_seed(tmp_path / "c", "bm9999")


def test_image_size_is_read_from_the_bmodels_when_sail_is_there(tmp_path, sail):
    from blip.runtime.sail import SailRuntime
    from blip.seed import SeedCaptioner

    root = seed_folder(tmp_path / "models", names=[])
    make_cap(root / "BM1684X" / "blip_cap_bm1684x_f32_1b.bmodel", size=8)
    make_itm(root / "BM1684X" / "blip_itm_bm1684x_f32_1b.bmodel", size=8, text=35)
    doc = yaml.safe_load(package_seed(root, "bm1684x").read_text())
    assert doc["tasks"]["caption"]["image_size"] == 8 and doc["tasks"]["match"]["image_size"] == 8
    SeedCaptioner(ModelPackage.load(str(root)), SailRuntime())  # sizes agree: loads
    doc["tasks"]["caption"]["image_size"] = 384
    (root / "manifest.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(PackageError, match=r"takes pixel_values \(1, 3, 8, 8\), the manifest says image_size 384"):
        SeedCaptioner(ModelPackage.load(str(root)), SailRuntime())
