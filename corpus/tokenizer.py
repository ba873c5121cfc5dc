"""LLaMA sentencepiece tokenizer: loading, batch encoding, and training a small local model.

The corpus contract is a LLaMA ``tokenizer.model``: BPE with byte fallback, identity normalisation,
``add_dummy_prefix`` on, unk/bos/eos = 0/1/2, the vocabulary not expanded. No model hub is reachable
from our machines, so tests and the demo train a small model with the same settings
(:func:`train_tokenizer`).

Whole-document encoding plus byte offsets
-----------------------------------------
A document is encoded once, whole; sentence boundaries are then mapped onto token positions. Encoding
sentence by sentence (as CaMA did) inserts sentencepiece's dummy-prefix ``▁`` at every sentence start:
the tokens would no longer be those of the document. :meth:`Tokenizer.token_ends` gives each token's
end as a byte offset into the UTF-8 document from a per-piece byte-length table and a cumulative sum,
which costs a fraction of the encode itself.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import sentencepiece as spm

from common.atomic import write_bytes
from common.errors import UserError

UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
SPACE_PIECE = "\u2581"  # "▁": sentencepiece's visible space


class TokenizerError(UserError, ValueError):
    """A tokenizer file is missing, unreadable, or not LLaMA-like."""


class Tokenizer:
    """A loaded sentencepiece model with the LLaMA conventions checked."""

    def __init__(self, model_file: str | os.PathLike) -> None:
        self.path = Path(model_file)
        if not self.path.is_file():
            raise TokenizerError(f"tokenizer model not found: {self.path}")
        sp = spm.SentencePieceProcessor()
        try:
            sp.Load(str(self.path))
        except (OSError, RuntimeError) as exc:
            raise TokenizerError(f"{self.path}: not a sentencepiece model ({exc})") from exc
        if (sp.bos_id(), sp.eos_id()) != (BOS_ID, EOS_ID):
            raise TokenizerError(
                f"{self.path}: bos/eos ids are {sp.bos_id()}/{sp.eos_id()}, LLaMA uses {BOS_ID}/{EOS_ID}"
            )
        self.sp = sp
        self.vocab_size: int = sp.GetPieceSize()
        self.bos_id, self.eos_id, self.unk_id = BOS_ID, EOS_ID, sp.unk_id()

    @functools.cached_property
    def piece_nbytes(self) -> np.ndarray:
        """Bytes of the *input* each piece stands for.

        ``▁`` stands for one space byte, a byte-fallback piece ``<0xNN>`` for one byte, control pieces
        (bos/eos/pad) for none. The unknown piece has no fixed length: it is marked -1 so that a
        document containing it takes the slow, exact path.
        """
        sp = self.sp
        pieces = sp.IdToPiece(list(range(self.vocab_size)))
        out = np.array([len(p.replace(SPACE_PIECE, " ").encode("utf-8")) for p in pieces], dtype=np.int64)
        # Byte pieces are spelled <0xNN>; control and unknown pieces are <...> by convention or are
        # the model's declared special ids. Asking sentencepiece about those alone keeps this fast.
        special = {sp.unk_id(), sp.bos_id(), sp.eos_id(), sp.pad_id()}
        for i, piece in enumerate(pieces):
            if i in special or (piece.startswith("<") and piece.endswith(">")):
                if sp.IsByte(i):
                    out[i] = 1
                elif sp.IsControl(i):
                    out[i] = 0
                elif sp.IsUnknown(i):
                    out[i] = -1
        return out

    def encode(self, text: str) -> list[int]:
        return self.sp.Encode(text)

    def encode_batch(self, texts: Sequence[str], num_threads: int = 1) -> list[list[int]]:
        """Encode many documents in one call (sentencepiece releases the GIL inside)."""
        return self.sp.Encode(list(texts), num_threads=num_threads)

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.Decode([int(i) for i in ids])

    def token_ends(self, ids: np.ndarray, text: str, data: bytes) -> np.ndarray:
        """End byte offset (exclusive) in ``data`` (= ``text`` as UTF-8) of each token in ``ids``.

        The pieces of a whole-document encoding spell ``" " + text`` (the dummy prefix) when the model
        uses identity normalisation, so a cumulative sum of piece lengths minus one is the offset. If
        the lengths do not add up (an unknown piece, or a model that normalises its input) we fall
        back to sentencepiece's own per-piece offsets, which are exact but slower.
        """
        lengths = self.piece_nbytes[ids]
        ok = len(ids) > 0 and lengths.min() >= 0
        return self._ends_from_cumsum(np.cumsum(lengths), ok, text, len(data))

    def encode_with_ends(self, texts: Sequence[str], datas: Sequence[bytes], max_whole: int | None = None
                         ) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """``(ids, token_ends)`` for each text; ``datas`` are the texts as UTF-8.

        The same as :meth:`encode` plus :meth:`token_ends` per text, but the array work is done once
        for the whole batch: per-document numpy calls cost more than the arithmetic itself. With
        ``max_whole``, a text of 1 to ``max_whole`` tokens gets None for its ends (a document that
        fits in one sample is never cut, so where its tokens end is not needed).
        """
        encoded = self.encode_arrays(texts)
        counts = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        bounds = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum(counts, out=bounds[1:])
        flat = np.concatenate(encoded) if encoded else np.empty(0, dtype=np.int32)
        lengths = self.piece_nbytes[flat]
        cum = np.cumsum(lengths)
        all_known = len(lengths) == 0 or lengths.min() >= 0
        out = []
        for i, (a, b) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist())):
            if max_whole is not None and 0 < b - a <= max_whole:
                out.append((flat[a:b], None))
                continue
            ok = b > a and (all_known or lengths[a:b].min() >= 0)
            doc_cum = cum[a:b] - (cum[a - 1] if a else 0)
            out.append((flat[a:b], self._ends_from_cumsum(doc_cum, ok, texts[i], len(datas[i]))))
        return out

    def encode_arrays(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Each text's ids as an int32 array, one thread. sentencepiece ≥ 0.2.1 returns them as
        buffers (``return_type="numpy"``): building Python lists of ints costs about a fifth of the
        encode itself on Chinese text; an older one gives lists, converted here."""
        if self._numpy_out:
            try:
                return self.sp.Encode(list(texts), num_threads=1, return_type="numpy")
            except (TypeError, ValueError, KeyError):
                self._numpy_out = False
        return [np.asarray(ids, dtype=np.int32) for ids in self.sp.Encode(list(texts), num_threads=1)]

    _numpy_out = True   # until this sentencepiece says it has no numpy output

    def _ends_from_cumsum(self, ends: np.ndarray, lengths_known: bool, text: str, n_bytes: int) -> np.ndarray:
        if lengths_known and ends[-1] == n_bytes + 1:
            ends -= 1
            # A lone dummy-prefix piece stands for no input: like any such piece it goes with the
            # token after it (the same rule the exact path applies).
            if ends[0] == 0:
                lead = int(np.searchsorted(ends, 0, side="right"))
                if lead < len(ends):
                    ends[:lead] = ends[lead]
            return ends
        return self._token_ends_exact(text, len(ends))

    def _token_ends_exact(self, text: str, n_tokens: int) -> np.ndarray:
        proto = self.sp.Encode(text, return_type="proto")
        if len(proto.pieces) != n_tokens:
            raise TokenizerError(f"{self.path}: encoding is not deterministic for the same text")
        # sentencepiece reports offsets into the original UTF-8 input. Pieces that stand for no
        # input of their own (all but the last byte-fallback piece of a character) get the end of
        # the next piece that does, so a boundary between characters never falls between them.
        begins = np.fromiter((p.begin for p in proto.pieces), dtype=np.int64, count=n_tokens)
        ends = np.fromiter((p.end for p in proto.pieces), dtype=np.int64, count=n_tokens)
        filled = np.where(ends > begins, ends, np.iinfo(np.int64).max)
        filled = np.minimum.accumulate(filled[::-1])[::-1]
        filled[filled == np.iinfo(np.int64).max] = len(text.encode("utf-8"))
        return np.maximum.accumulate(filled) if n_tokens else filled


def train_tokenizer(
    texts: Iterable[str],
    model_path: str | os.PathLike,
    vocab_size: int,
    *,
    max_sentence_bytes: int = 4096,
    input_sentence_size: int = 0,
) -> Path:
    """Train a LLaMA-like BPE model from ``texts`` (one training sentence each) into ``model_path``.

    Settings follow the LLaMA tokenizer: BPE, byte fallback, digits split, identity normalisation,
    no whitespace collapsing, dummy prefix, unk/bos/eos 0/1/2, no pad. Training is single-threaded
    and unshuffled so the same input yields a byte-identical model. The model is written to a
    temporary name next to the target and renamed, so a crash leaves no half-written file.
    """
    model_path = Path(model_path)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    n_lines = 0

    def lines() -> Iterable[str]:
        # The trainer learns from lines; a newline inside a text would end a sentence anyway.
        nonlocal n_lines
        for text in texts:
            for line in text.splitlines():
                if line.strip():
                    n_lines += 1
                    yield line

    buf = io.BytesIO()
    try:
        # An iterator instead of an input file keeps temporary paths out of the model's
        # trainer_spec, which would otherwise make two identical trainings differ in bytes.
        spm.SentencePieceTrainer.Train(
            sentence_iterator=iter(lines()),
            model_writer=buf,
            model_type="bpe",
            vocab_size=vocab_size,
            character_coverage=0.99995,
            byte_fallback=True,
            split_digits=True,
            allow_whitespace_only_pieces=True,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            add_dummy_prefix=True,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            pad_id=-1,
            max_sentence_length=max_sentence_bytes,
            input_sentence_size=input_sentence_size,
            shuffle_input_sentence=False,
            num_threads=1,
            hard_vocab_limit=False,
            minloglevel=2,
        )
    except RuntimeError as exc:
        if n_lines == 0:
            raise TokenizerError("no text to train a tokenizer on") from exc
        raise TokenizerError(f"sentencepiece training failed: {exc}") from exc
    write_bytes(model_path, buf.getvalue())
    return model_path
