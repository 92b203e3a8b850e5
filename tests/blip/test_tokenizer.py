"""Tokenizer ids equal transformers' BertTokenizerFast (+ [DEC] bos, [ENC]) on the same vocabulary."""
import logging
import os
import shutil

import numpy as np
import pytest

from blip.errors import TokenizerError
from blip.tokenizer import Tokenizer
from tests.blip import tiny

TEXTS = [
    "a picture of ",
    "A Picture of the CATS.",
    "is there a red car on the street?",
    "  a   dog\tstanding at the gate  ",
    "zebra crossing",  # unknown words -> [UNK]
    "a [SEP] dog",  # special tokens in the text are matched as such
    "Thé cät",  # accents stripped with lower case
    "person 人",
]


@pytest.fixture(scope="module")
def vocab_dir(tmp_path_factory) -> str:
    return tiny.write_vocab(str(tmp_path_factory.mktemp("tok") / "vocab"))


@pytest.fixture(scope="module")
def hf(vocab_dir):
    transformers = pytest.importorskip("transformers")
    tok = transformers.BertTokenizerFast.from_pretrained(vocab_dir)
    tok.add_special_tokens({"bos_token": "[DEC]"})
    tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tok


@pytest.fixture(scope="module")
def json_dir(hf, tmp_path_factory) -> str:
    """The folder transformers writes (tokenizer.json with [DEC]/[ENC] already added)."""
    out = str(tmp_path_factory.mktemp("tok") / "json")
    hf.save_pretrained(out)
    if os.path.exists(os.path.join(out, "vocab.txt")):
        os.remove(os.path.join(out, "vocab.txt"))  # make sure tokenizer.json is what gets read
    return out


@pytest.fixture(params=["vocab", "json"])
def tok(request, vocab_dir, json_dir) -> Tokenizer:
    return Tokenizer.from_dir(vocab_dir if request.param == "vocab" else json_dir)


def test_special_ids_match(tok, hf):
    assert tok.pad_id == hf.pad_token_id == 0
    assert (tok.cls_id, tok.sep_id) == (hf.cls_token_id, hf.sep_token_id) == (3, 4)
    assert tok.bos_id == hf.bos_token_id == len(tiny.VOCAB)
    assert tok.enc_id == hf.convert_tokens_to_ids("[ENC]") == len(tiny.VOCAB) + 1
    assert tok.vocab_size == len(hf) == len(tiny.VOCAB) + 2
    assert tok.token_to_id("picture") == 7 and tok.token_to_id("nope") is None


@pytest.mark.parametrize("text", TEXTS)
def test_ids_match(tok, hf, text):
    assert tok.encode(text, 35) == hf(text)["input_ids"]


def test_batch_matches_padding_longest(tok, hf):
    ids, mask = tok.encode_batch(TEXTS, 35)
    ref = hf(TEXTS, padding="longest", return_tensors="np")
    assert ids.dtype == np.int64 and mask.dtype == np.int64
    np.testing.assert_array_equal(ids, ref["input_ids"])
    np.testing.assert_array_equal(mask, ref["attention_mask"])


def test_batch_static_width_and_cache(tok, hf):
    ids, mask = tok.encode_batch(TEXTS[:2], 35, pad_to=12)
    ref = hf(TEXTS[:2], padding="max_length", max_length=12, truncation=True, return_tensors="np")
    np.testing.assert_array_equal(ids, ref["input_ids"])
    np.testing.assert_array_equal(mask, ref["attention_mask"])
    again = tok.encode_batch(TEXTS[:2], 35, pad_to=12)
    assert again[0] is ids and not ids.flags.writeable  # cached, and safe to share


def test_truncation_matches_and_warns_once_per_text(tok, hf, caplog):
    long_text = "a red car on the street " * 10
    with caplog.at_level(logging.WARNING, logger="blip.tokenizer"):
        first = tok.encode(long_text, 10)
        tok.encode(long_text, 10)
        tok.encode("the dog " * 10, 10)
    assert first == hf(long_text, truncation=True, max_length=10)["input_ids"] and len(first) == 10
    assert first[-1] == tok.sep_id
    warnings = [r for r in caplog.records if "truncated" in r.getMessage()]
    assert len(warnings) == 2


def test_decode_matches(tok, hf):
    ids = hf("a picture of the cats. is there a dog?")["input_ids"] + [tok.bos_id, tok.enc_id, 0, 0]
    assert tok.decode(ids) == hf.decode(ids, skip_special_tokens=True) == "a picture of the cats. is there a dog?"


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_is_an_error(tok, text):
    with pytest.raises(TokenizerError, match="empty text"):
        tok.encode(text, 35)


def test_empty_batch_is_an_error(tok):
    with pytest.raises(TokenizerError, match="no texts"):
        tok.encode_batch([], 35)


def test_missing_files_and_bad_vocab(tmp_path):
    with pytest.raises(TokenizerError, match="neither tokenizer.json nor vocab.txt"):
        Tokenizer.from_dir(str(tmp_path))
    (tmp_path / "vocab.txt").write_text("[PAD]\nhello\n")
    with pytest.raises(TokenizerError, match=r"vocab\.txt: vocabulary lacks \[CLS\], \[SEP\], \[UNK\]"):
        Tokenizer.from_dir(str(tmp_path))


def test_corrupt_tokenizer_json(tmp_path, vocab_dir):
    shutil.copy(os.path.join(vocab_dir, "vocab.txt"), str(tmp_path))
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="cannot load tokenizer"):
        Tokenizer.from_dir(str(tmp_path))
