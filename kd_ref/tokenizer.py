"""BERT WordPiece tokenization through the `tokenizers` library.

encode() gives, per example, input_ids = [CLS] a [SEP] (b [SEP]) and token_type_ids
(0 for [CLS] a [SEP], 1 for b [SEP]), truncated longest-first to max_len tokens in
total (the longer text loses a token until the pair fits, as HF `truncation=True`)
and not padded: kd_ref.batching pads to a few bucket lengths.
"""
import json
from pathlib import Path

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from kd_ref.errors import KdError
from kd_ref.glue import Example

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


class BertTokenizer:
    def __init__(self, tokenizer: Tokenizer, max_len: int):
        if max_len < 4:  # [CLS] a [SEP] b [SEP] needs room for at least one token of each text
            raise KdError(f"--max-len {max_len} is too short: BERT inputs need at least 4 tokens")
        # a tokenizer.json may carry its own padding/truncation; ours always wins
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_len, strategy="longest_first", direction="right")
        self._tokenizer = tokenizer
        self.max_len = max_len

    @classmethod
    def from_dir(cls, model_dir, max_len: int = 128) -> "BertTokenizer":
        """From an HF checkpoint folder: tokenizer.json if present, else vocab.txt.

        tokenizer.json holds the full pipeline (normalizer included) and is used
        as is. With only vocab.txt we build BERT's pipeline, lower-casing (and
        accent stripping) as tokenizer_config.json's do_lower_case says, default True.
        """
        model_dir = Path(model_dir)
        if (model_dir / "tokenizer.json").is_file():
            return cls(Tokenizer.from_file(str(model_dir / "tokenizer.json")), max_len)
        vocab = model_dir / "vocab.txt"
        if not vocab.is_file():
            raise KdError(f"{model_dir}: no tokenizer.json or vocab.txt, not a BERT checkpoint folder")
        config_path = model_dir / "tokenizer_config.json"
        config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        return cls(_wordpiece_from_vocab(vocab, config.get("do_lower_case", True)), max_len)

    def encode(self, examples: list[Example]) -> list[tuple[list[int], list[int]]]:
        """(input_ids, token_type_ids) per example, both of length <= max_len."""
        texts = [e.text_a if e.text_b is None else (e.text_a, e.text_b) for e in examples]
        return [(enc.ids, enc.type_ids) for enc in self._tokenizer.encode_batch(texts)]

    @property
    def pad_id(self) -> int:
        return self._tokenizer.token_to_id("[PAD]")

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)


def _wordpiece_from_vocab(vocab: Path, lowercase: bool) -> Tokenizer:
    """BERT's pipeline: clean + lower-case, split on whitespace/punctuation, WordPiece, add specials."""
    tokenizer = Tokenizer(models.WordPiece.from_file(str(vocab), unk_token="[UNK]"))
    missing = [t for t in SPECIAL_TOKENS if tokenizer.token_to_id(t) is None]
    if missing:
        raise KdError(f"{vocab}: special tokens {missing} missing from the vocabulary")
    # registering the specials keeps a literal '[SEP]' in the text from being split into pieces
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[(t, tokenizer.token_to_id(t)) for t in ("[CLS]", "[SEP]")],
    )
    return tokenizer
