"""BERT WordPiece tokenization through the `tokenizers` library.

encode() gives, per example, input_ids = [CLS] a [SEP] (b [SEP]) and token_type_ids
(0 for [CLS] a [SEP], 1 for b [SEP]), truncated longest-first to max_len tokens in
total (the longer text loses a token until the pair fits, as HF `truncation=True`)
and not padded: kd_ref.data.batching pads to a few bucket lengths.
"""
import json
from pathlib import Path

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from kd_ref.data.glue import Example
from kd_ref.plumbing.errors import KdError

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
        if not model_dir.is_dir():
            raise KdError(f"{model_dir}: no such folder (expected a BERT checkpoint folder)")
        path = model_dir / "tokenizer.json"
        if not path.is_file():
            path = model_dir / "vocab.txt"
        if not path.is_file():
            raise KdError(f"{model_dir}: no tokenizer.json or vocab.txt, not a BERT checkpoint folder")
        try:
            if path.name == "tokenizer.json":
                tokenizer = Tokenizer.from_file(str(path))
            else:
                tokenizer = Tokenizer(models.WordPiece.from_file(str(path), unk_token="[UNK]"))
        except Exception as e:  # tokenizers raises a bare Exception for unreadable files
            raise KdError(f"{path}: cannot read ({e})") from None
        missing = [t for t in SPECIAL_TOKENS if tokenizer.token_to_id(t) is None]
        if missing:
            raise KdError(f"{path}: special tokens {missing} missing from the vocabulary, not a BERT tokenizer")
        if path.name == "vocab.txt":
            _bert_pipeline(tokenizer, _lower_case(model_dir / "tokenizer_config.json"))
        return cls(tokenizer, max_len)

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


def _lower_case(config_path: Path) -> bool:
    """tokenizer_config.json's do_lower_case; True (uncased BERT) when the file or the key is absent."""
    if not config_path.is_file():
        return True
    try:
        lower_case = json.loads(config_path.read_text()).get("do_lower_case", True)
    except (OSError, ValueError, AttributeError) as e:
        raise KdError(f"{config_path}: cannot read ({type(e).__name__}: {e})") from None
    if not isinstance(lower_case, bool):
        raise KdError(f"{config_path}: do_lower_case={lower_case!r}, expected true or false")
    return lower_case


def _bert_pipeline(tokenizer: Tokenizer, lowercase: bool) -> None:
    """BERT's pipeline around a WordPiece vocabulary: clean + lower-case, split on
    whitespace/punctuation, add [CLS] and [SEP]."""
    # registering the specials keeps a literal '[SEP]' in the text from being split into pieces
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[(t, tokenizer.token_to_id(t)) for t in ("[CLS]", "[SEP]")],
    )
