"""BERT WordPiece tokenizer from a package folder, with BLIP's `[DEC]` (bos) and `[ENC]` tokens.

Ids equal transformers' BertTokenizerFast on the same vocabulary after
`add_special_tokens({"bos_token": "[DEC]"})` and `{"additional_special_tokens": ["[ENC]"]}`
(reference/seed-blip.md §5). No hub access: the files must be in the folder.
"""
import logging
import os
from collections import OrderedDict
from typing import Any, List, Optional, Sequence, Set, Tuple

import numpy as np

from blip.errors import TokenizerError

log = logging.getLogger(__name__)

BOS_TOKEN = "[DEC]"
ENC_TOKEN = "[ENC]"
_REQUIRED = ("[PAD]", "[CLS]", "[SEP]", "[UNK]")
_WARNED_MAX = 1024  # distinct truncated texts remembered, so the memory stays bounded
_BATCHES_MAX = 256  # cached encode_batch results (prompt sets of all streams)

_BatchKey = Tuple[Tuple[str, ...], int, Optional[int]]


def _build_from_vocab(vocab_path: str) -> Any:
    """The same pipeline transformers builds for BertTokenizerFast(do_lower_case=True)."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import WordPiece

    vocab = WordPiece.read_file(vocab_path)
    missing = [t for t in _REQUIRED if t not in vocab]
    if missing:
        raise TokenizerError("%s: vocabulary lacks %s" % (vocab_path, ", ".join(missing)))
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.add_special_tokens([t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]") if t in vocab])
    return tok


class Tokenizer:
    """Text <-> ids for one package. Keeps a small memory of warned texts: one per engine."""

    def __init__(self, backend: Any, source: str) -> None:
        self._tok = backend
        self.source = source
        backend.no_truncation()
        backend.no_padding()
        for token in (BOS_TOKEN, ENC_TOKEN):  # appended in this order, as BLIP's processor does
            if backend.token_to_id(token) is None:
                backend.add_special_tokens([token])
        ids = {t: backend.token_to_id(t) for t in _REQUIRED + (BOS_TOKEN, ENC_TOKEN)}
        missing = [t for t, i in ids.items() if i is None]
        if missing:
            raise TokenizerError("%s: tokenizer lacks %s" % (source, ", ".join(missing)))
        self.pad_id: int = ids["[PAD]"]
        self.cls_id: int = ids["[CLS]"]
        self.sep_id: int = ids["[SEP]"]
        self.bos_id: int = ids[BOS_TOKEN]
        self.enc_id: int = ids[ENC_TOKEN]
        self._warned: Set[str] = set()
        self._batches: "OrderedDict[_BatchKey, Tuple[np.ndarray, np.ndarray]]" = OrderedDict()

    @classmethod
    def from_dir(cls, path: str) -> "Tokenizer":
        """tokenizer.json (preferred) or vocab.txt (BERT WordPiece, lower case) from `path`."""
        json_path = os.path.join(path, "tokenizer.json")
        vocab_path = os.path.join(path, "vocab.txt")
        try:
            from tokenizers import Tokenizer as RustTokenizer
        except ImportError as exc:
            raise TokenizerError("the tokenizers package is not installed (%s)" % exc) from None
        try:
            if os.path.isfile(json_path):
                return cls(RustTokenizer.from_file(json_path), json_path)
            if os.path.isfile(vocab_path):
                return cls(_build_from_vocab(vocab_path), vocab_path)
        except TokenizerError:
            raise
        except Exception as exc:  # tokenizers raises plain Exception on malformed files
            raise TokenizerError("%s: cannot load tokenizer: %s" % (path, str(exc).splitlines()[0])) from None
        raise TokenizerError("%s: neither tokenizer.json nor vocab.txt found" % path)

    @property
    def vocab_size(self) -> int:
        """Number of ids, added tokens ([DEC], [ENC]) included."""
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    def token_to_id(self, token: str) -> Optional[int]:
        """The id of `token`, or None when it is not in the vocabulary."""
        return self._tok.token_to_id(token)

    def encode(self, text: str, max_length: int) -> List[int]:
        """[CLS] text [SEP], truncated to `max_length` ids (one warning per distinct text)."""
        if not isinstance(text, str) or not text.strip():
            raise TokenizerError("empty text: a prompt or question needs at least one word")
        if max_length < 2:
            raise TokenizerError("max_length must be at least 2, got %d" % max_length)
        body = self._tok.encode(text, add_special_tokens=False).ids
        if len(body) > max_length - 2:
            body = body[: max_length - 2]
            self._warn_truncated(text, max_length)
        return [self.cls_id] + list(body) + [self.sep_id]

    def _warn_truncated(self, text: str, max_length: int) -> None:
        if text in self._warned:
            return
        if len(self._warned) >= _WARNED_MAX:
            self._warned.clear()
        self._warned.add(text)
        shown = text if len(text) <= 60 else text[:57] + "..."
        log.warning("text %r is longer than %d tokens and was truncated", shown, max_length)

    def encode_batch(
        self, texts: Sequence[str], max_length: int, pad_to: Optional[int] = None
    ) -> Tuple[np.ndarray, np.ndarray]:
        """int64 ids and attention_mask [len(texts), T], padded with [PAD] to the longest text
        (or to `pad_to` for graphs with a static text length). Results are cached by the texts
        (prompts repeat every frame) and returned read-only."""
        key = (tuple(texts), max_length, pad_to)
        hit = self._batches.get(key)
        if hit is not None:
            self._batches.move_to_end(key)
            return hit
        if not texts:
            raise TokenizerError("no texts to encode")
        if pad_to is not None and pad_to < max_length:
            max_length = pad_to
        rows = [self.encode(t, max_length) for t in texts]
        width = pad_to if pad_to is not None else max(len(r) for r in rows)
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        ids.flags.writeable = False
        mask.flags.writeable = False
        self._batches[key] = (ids, mask)
        if len(self._batches) > _BATCHES_MAX:
            self._batches.popitem(last=False)
        return ids, mask

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids` without special tokens ([CLS] [SEP] [PAD] [DEC] [ENC] ...)."""
        return str(self._tok.decode([int(i) for i in ids], skip_special_tokens=True))
