"""CLIP byte-level BPE tokenizer (the one every EVA-CLIP text tower was trained with).

Text is cleaned (ftfy, HTML entities, whitespace), lower-cased, split by CLIP's regex, mapped byte-wise to
printable unicode and merged by the 48,894 BPE ranks of `bpe_simple_vocab_16e6.txt.gz` (shipped with the package).
`tokenize` wraps each text in start/end tokens and pads to a context of 77; longer texts are cut so that the
end token stays last (the text tower pools at the end token). Ids equal open_clip's.
"""
from __future__ import annotations

import gzip
import html
from functools import lru_cache
from typing import Dict, Iterable, List, Sequence, Tuple, Union

import numpy as np

from paddlemix_eva.utils.resources import data_path

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
NUM_MERGES = 49152 - 256 - 2
START_TOKEN = "<start_of_text>"
END_TOKEN = "<end_of_text>"
CONTEXT_LENGTH = 77


@lru_cache(maxsize=None)
def byte_to_unicode() -> Dict[int, str]:
    """Reversible map of the 256 byte values onto printable unicode characters (no whitespace/control chars),
    so BPE can work on strings: printable Latin-1 bytes map to themselves, the rest to code points 256+."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def _pairs(word: Sequence[str]) -> set:
    return {(a, b) for a, b in zip(word[:-1], word[1:])}


@lru_cache(maxsize=None)
def _fix_text():
    """ftfy's `fix_text`, which open_clip applies too: without it mojibake ('cafÃ©') tokenizes differently, so it is
    required rather than skipped."""
    try:
        import ftfy
    except ImportError as err:
        raise ImportError("the CLIP tokenizer needs ftfy to give open_clip's token ids: `pip install ftfy` "
                          "(it is in requirements.txt)") from err
    return ftfy.fix_text


def _clean(text: str) -> str:
    text = _fix_text()(text)
    text = html.unescape(html.unescape(text)).strip()
    return " ".join(text.split()).lower()


class CLIPTokenizer:
    """Encode text to CLIP BPE ids; `tokenize(texts)` gives the padded [N, 77] int64 array the text tower eats."""

    def __init__(self, vocab_file: str = None, context_length: int = CONTEXT_LENGTH):
        import regex

        path = vocab_file or data_path(VOCAB_FILE)
        with gzip.open(path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")
        merges = [tuple(line.split()) for line in lines[1 : NUM_MERGES + 1]]
        if len(merges) != NUM_MERGES or any(len(m) != 2 for m in merges):
            raise ValueError(f"{path}: expected {NUM_MERGES} BPE merges of two symbols each")
        symbols = list(byte_to_unicode().values())
        vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [START_TOKEN, END_TOKEN]
        self.encoder: Dict[str, int] = {token: i for i, token in enumerate(vocab)}
        self.decoder: Dict[int, str] = {i: token for token, i in self.encoder.items()}
        self.ranks: Dict[Tuple[str, str], int] = {m: i for i, m in enumerate(merges)}
        self.start_id = self.encoder[START_TOKEN]
        self.end_id = self.encoder[END_TOKEN]
        self.vocab_size = len(vocab)
        self.context_length = context_length
        self._cache: Dict[str, str] = {START_TOKEN: START_TOKEN, END_TOKEN: END_TOKEN}
        self._pattern = regex.compile(
            rf"{regex.escape(START_TOKEN)}|{regex.escape(END_TOKEN)}|'s|'t|'re|'ve|'m|'ll|'d|[\p{{L}}]+|[\p{{N}}]|[^\s\p{{L}}\p{{N}}]+",
            regex.IGNORECASE,
        )

    def _bpe(self, token: str) -> str:
        """Merge the characters of one pre-token by rank; the last symbol carries the end-of-word marker."""
        if token in self._cache:
            return self._cache[token]
        word: List[str] = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            best = min(_pairs(word), key=lambda pair: self.ranks.get(pair, float("inf")))
            if best not in self.ranks:
                break
            merged: List[str] = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        result = " ".join(word)
        self._cache[token] = result
        return result

    def encode(self, text: str) -> List[int]:
        byte_map = byte_to_unicode()
        ids: List[int] = []
        for piece in self._pattern.findall(_clean(text)):
            mapped = "".join(byte_map[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[sym] for sym in self._bpe(mapped).split(" "))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        inverse = {v: k for k, v in byte_to_unicode().items()}
        text = "".join(self.decoder[int(i)] for i in ids if int(i) not in (self.start_id, self.end_id, 0))
        text = text.replace("</w>", " ")  # the only character outside the byte map
        return bytearray(inverse.get(c, ord(" ")) for c in text).decode("utf-8", "replace").strip()

    def tokenize(self, texts: Union[str, Sequence[str]], context_length: int = None) -> np.ndarray:
        """[N, context_length] int64 ids: start, text, end, zero padding; over-long texts keep the end token last."""
        if isinstance(texts, str):
            texts = [texts]
        length = context_length or self.context_length
        out = np.zeros((len(texts), length), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [self.start_id] + self.encode(text) + [self.end_id]
            if len(ids) > length:
                ids = ids[:length]
                ids[-1] = self.end_id
            out[row, : len(ids)] = ids
        return out

    __call__ = tokenize


@lru_cache(maxsize=None)
def get_tokenizer() -> CLIPTokenizer:
    return CLIPTokenizer()
