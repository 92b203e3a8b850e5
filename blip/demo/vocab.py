"""The demo model's WordPiece vocabulary: BERT's special tokens, the world's words, then BLIP's
[DEC] (decoder bos) and [ENC], so the package's tokenizer follows real BLIP's conventions.

Uses only `tokenizers` (a runtime dependency), not transformers.
"""
from typing import Dict, List

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from blip.demo import scenes

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
BLIP_SPECIALS = ["[DEC]", "[ENC]"]


def world_words() -> List[str]:
    """Every word (and punctuation mark) of the world's texts, sorted."""
    pre = pre_tokenizers.BertPreTokenizer()
    words = set()
    for text in scenes.world_texts():
        words.update(piece for piece, _ in pre.pre_tokenize_str(text.lower()))
    return sorted(words)


def vocabulary() -> List[str]:
    """The token list; a token's id is its index ([PAD] is 0)."""
    return SPECIALS + world_words() + BLIP_SPECIALS


def token_ids() -> Dict[str, int]:
    """token -> id."""
    return {tok: i for i, tok in enumerate(vocabulary())}


def build_tokenizer() -> Tokenizer:
    """A bert-base-uncased-style tokenizer over `vocabulary()`: lower case, [CLS] text [SEP]."""
    ids = token_ids()
    tok = Tokenizer(models.WordPiece(vocab=ids, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=None, clean_text=True,
                                                handle_chinese_chars=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.add_special_tokens(SPECIALS + BLIP_SPECIALS)
    return tok
