"""The sentencepiece wrapper: LLaMA conventions, determinism, and byte offsets of tokens."""

from __future__ import annotations

import numpy as np
import pytest
import sentencepiece as spm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import sample_texts
from corpus.tokenizer import Tokenizer, TokenizerError, train_tokenizer


@pytest.fixture(scope="module")
def tok(tokenizer_path) -> Tokenizer:
    return Tokenizer(tokenizer_path)


def test_llama_conventions(tok):
    sp = tok.sp
    assert (sp.unk_id(), sp.bos_id(), sp.eos_id(), sp.pad_id()) == (0, 1, 2, -1)
    assert sp.IdToPiece(1) == "<s>" and sp.IdToPiece(2) == "</s>"
    assert 2000 < tok.vocab_size <= 3000
    # Byte fallback: text never seen in training round-trips instead of becoming <unk>.
    text = "𠀀 emoji 😀 and Ω≈ç"
    ids = tok.encode(text)
    assert 0 not in ids
    assert tok.decode(ids) == text
    # Identity normalisation: whitespace is kept as written.
    assert tok.decode(tok.encode("a  b\t\tc\n\nd")) == "a  b\t\tc\n\nd"


def test_training_is_deterministic(tmp_path):
    texts = sample_texts()[:20]
    a = train_tokenizer(texts, tmp_path / "a.model", vocab_size=600)
    b = train_tokenizer(texts, tmp_path / "b.model", vocab_size=600)
    assert a.read_bytes() == b.read_bytes()
    assert not list(tmp_path.glob("*.tmp*"))


def test_encode_batch_equals_single(tok):
    texts = sample_texts()[:10] + ["", "   ", "未知字符𠀀"]
    assert tok.encode_batch(texts) == [tok.encode(t) for t in texts]
    batch = tok.encode_with_ends(texts, [t.encode() for t in texts])
    for text, (ids, ends) in zip(texts, batch):
        single = np.asarray(tok.encode(text), dtype=np.int64)
        assert ids.tolist() == single.tolist()
        assert np.array_equal(ends, tok.token_ends(single, text, text.encode()))


def _cuts(ends: np.ndarray, text: str) -> np.ndarray:
    char_ends = np.cumsum([len(c.encode("utf-8")) for c in text])
    return np.searchsorted(ends, char_ends, side="right")


text_st = st.text(
    alphabet=st.sampled_from(list("中文字。！？，“”abc XYZ.!?\n\t0123") + ["😀", "é", "ß", "\u3000"]),
    max_size=80,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=text_st)
def test_fast_token_ends_agree_with_sentencepiece_offsets(tok, text):
    """The cumulative-length path and sentencepiece's own offsets put every character boundary
    between the same tokens."""
    ids = np.asarray(tok.encode(text), dtype=np.int64)
    data = text.encode("utf-8")
    fast = tok.token_ends(ids, text, data)
    exact = tok._token_ends_exact(text, len(ids))
    assert len(fast) == len(ids)
    assert (np.diff(fast) >= 0).all()
    if len(ids):
        assert fast[-1] == len(data)
    assert np.array_equal(_cuts(fast, text), _cuts(exact, text))


def test_model_that_normalises_falls_back_to_exact_offsets(tmp_path):
    """A model with NFKC and whitespace collapsing breaks the byte arithmetic: the exact path is used."""
    texts = sample_texts()[:30]
    (tmp_path / "t.txt").write_text("\n".join(t for text in texts for t in text.splitlines() if t.strip()))
    spm.SentencePieceTrainer.Train(
        input=str(tmp_path / "t.txt"), model_prefix=str(tmp_path / "nfkc"), vocab_size=500, model_type="bpe",
        byte_fallback=True, normalization_rule_name="nmt_nfkc", remove_extra_whitespaces=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2,
    )
    tok = Tokenizer(tmp_path / "nfkc.model")
    text = "全角ＡＢＣ１２３   and   spaces。"
    ids = np.asarray(tok.encode(text), dtype=np.int64)
    ends = tok.token_ends(ids, text, text.encode())
    assert ends[-1] == len(text.encode())
    assert np.array_equal(_cuts(ends, text), _cuts(tok._token_ends_exact(text, len(ids)), text))


def test_bad_tokenizer_files(tmp_path):
    with pytest.raises(TokenizerError, match="not found"):
        Tokenizer(tmp_path / "missing.model")
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"not a model")
    with pytest.raises(TokenizerError, match="junk.model"):
        Tokenizer(junk)
    with pytest.raises(TokenizerError, match="no text"):
        train_tokenizer(["", "   \n"], tmp_path / "empty.model", vocab_size=100)
