"""train.tokenizer and train.prompts: a transformers tokenizer equal to sentencepiece, alpaca templates,
reading instruction records, and prompt masking — with a real sentencepiece model and real files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sentencepiece as spm

from train.data import Collator
from train.prompts import (
    IGNORE_INDEX,
    InstructionDataError,
    InstructionDataset,
    TemplateError,
    load_template,
    read_instructions,
    split,
    tokenize_example,
)
from train.tokenizer import TokenizerError, check_vocab, load_tokenizer, save_tokenizer

ROOT = Path(__file__).resolve().parent.parent
INSTRUCTIONS = ROOT / "examples" / "data" / "instructions"

TEXTS = [
    "The committee approved the new budget on Tuesday.",
    "中文测试：今天天气很好，我们去西湖散步吧！",
    " starts with a space",
    "   three spaces, then\ttab and\n\nnewlines  ",
    "数字 2023 年 10 月 1 日，价格 3.5 元。",
]


@pytest.fixture(scope="module")
def tok(tokenizer_path):
    return load_tokenizer(tokenizer_path.parent)


@pytest.fixture(scope="module")
def sp(tokenizer_path):
    return spm.SentencePieceProcessor(model_file=str(tokenizer_path))


# --- tokenizer -----------------------------------------------------------------------------


@pytest.mark.parametrize("text", TEXTS)
def test_tokenizer_encodes_like_sentencepiece_with_bos(tok, sp, text):
    assert tok(text)["input_ids"] == [1, *sp.encode(text)]


def test_tokenizer_conventions(tok, sp):
    assert type(tok).__name__ in ("LlamaTokenizer", "LlamaTokenizerFast")
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (1, 2, 0)
    assert tok.padding_side == "right"
    assert len(tok) == sp.GetPieceSize() == 3000
    assert tok("x")["input_ids"][-1] != tok.eos_token_id  # eos is the builder's job
    batch = tok(["ab", "a b c d e"], padding=True)
    assert batch["input_ids"][0][-1] == 0 and batch["attention_mask"][0][-1] == 0  # right, with unk


def test_tokenizer_from_a_model_file_and_after_a_save(tok, tokenizer_path, tmp_path, sp):
    from_file = load_tokenizer(tokenizer_path)  # a bare .model file, anywhere
    assert all(from_file(t)["input_ids"] == tok(t)["input_ids"] for t in TEXTS)
    out = tmp_path / "ckpt"
    save_tokenizer(from_file, out)
    assert (out / "tokenizer.model").read_bytes() == tokenizer_path.read_bytes()
    assert (out / "tokenizer.json").is_file()
    # transformers 5 rebuilds its own pre-tokenizer on reload; load_tokenizer must restore ours.
    again = load_tokenizer(out)
    assert all(again(t)["input_ids"] == [1, *sp.encode(t)] for t in TEXTS)
    (out / "tokenizer.model").unlink()  # HF files only: no verification possible, same pipeline
    hf_only = load_tokenizer(out)
    assert hf_only(" starts with a space")["input_ids"] == [1, *sp.encode(" starts with a space")]
    assert hf_only.pad_token_id == 0


def test_tokenizer_errors_name_the_path(tmp_path):
    with pytest.raises(TokenizerError, match="tokenizer not found"):
        load_tokenizer(tmp_path / "missing")
    with pytest.raises(TokenizerError, match=r"no tokenizer\.model or tokenizer\.json"):
        load_tokenizer(tmp_path)
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(TokenizerError, match="bad.model"):
        load_tokenizer(bad)


def test_tokenizer_that_disagrees_with_sentencepiece_is_refused(tokenizer_path, tmp_path):
    from tokenizers import pre_tokenizers

    from train.tokenizer import verify_against_sentencepiece

    t = load_tokenizer(tokenizer_path)
    t.backend_tokenizer.normalizer = None
    t.backend_tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first", split=False)
    with pytest.raises(TokenizerError, match=r"encodes ' leading space' as .* but sentencepiece as"):
        verify_against_sentencepiece(t, tokenizer_path)


def test_check_vocab(tok):
    check_vocab(tok, 3000, "model x")
    with pytest.raises(TokenizerError, match=r"model x: the tokenizer has 3000 entries but .* is 32000; they must be equal"):
        check_vocab(tok, 32000, "model x")
    with pytest.raises(TokenizerError, match="2999"):
        check_vocab(tok, 2999, "model x")


# --- templates -----------------------------------------------------------------------------


def test_alpaca_template_prompts_and_response():
    t = load_template("alpaca")
    p = t.prompt("Add the numbers.", "2 and 3")
    assert p.endswith("### Instruction:\nAdd the numbers.\n\n### Input:\n2 and 3\n\n### Response:\n")
    assert "### Input:" not in t.prompt("Say hi.")
    assert t.prompt("Say hi.", output="Hi!").endswith("### Response:\nHi!")
    assert t.response(t.prompt("Say hi.") + " Hi there! ") == "Hi there!"
    assert t.response(t.prompt("Say hi.") + "Hi\n\n### Response:\nagain") == "Hi"  # a run-on answer is cut
    tricky = t.prompt("Echo '### Response:' back.")
    assert t.response(tricky + "ok", prompt=tricky) == "ok"
    with pytest.raises(ValueError, match="no '### Response:'"):
        t.response("no marker here")
    assert load_template("alpaca_zh").prompt("你好").startswith("下面是一条描述任务的指令。")


def test_braces_and_slot_names_in_user_text_are_left_alone():
    t = load_template("alpaca")
    p = t.prompt("Fill {instruction} and {input} and {0} {}", "json {\"a\": {\"b\": 1}}", "out {x}")
    assert "### Instruction:\nFill {instruction} and {input} and {0} {}\n" in p
    assert "### Input:\njson {\"a\": {\"b\": 1}}\n" in p and p.endswith("out {x}")


def test_template_errors_name_file_and_slot(tmp_path):
    good = json.loads((ROOT / "train" / "templates" / "alpaca.json").read_text())

    def write(**changes):
        data = {**good, **changes}
        data = {k: v for k, v in data.items() if v is not None}
        path = tmp_path / "t.json"
        path.write_text(json.dumps(data))
        return path

    with pytest.raises(TemplateError, match=r"t\.json: 'prompt_input' lacks the slot \{input\}"):
        load_template(write(prompt_input=good["prompt_input"].replace("{input}", "")))
    with pytest.raises(TemplateError, match=r"'prompt_no_input' lacks the slot \{instruction\}"):
        load_template(write(prompt_no_input="### Response:"))
    with pytest.raises(TemplateError, match=r"'prompt_no_input' does not contain response_split"):
        load_template(write(prompt_no_input="{instruction}\n### Answer:\n"))
    with pytest.raises(TemplateError, match="missing key 'response_split'"):
        load_template(write(response_split=None))
    with pytest.raises(TemplateError, match="unknown key 'promt'"):
        load_template(write(promt="x"))
    with pytest.raises(TemplateError, match=r"unknown template 'nope' .*known: alpaca, alpaca_zh"):
        load_template("nope")


# --- reading records -----------------------------------------------------------------------


def test_read_the_bundled_samples():
    for name in ("en.jsonl", "zh.jsonl"):
        records, skipped = read_instructions(INSTRUCTIONS / name)
        assert len(records) == 15 and not skipped
        assert any(r["input"] for r in records) and any(not r["input"] for r in records)


def test_bad_lines_are_counted_with_line_numbers(tmp_path):
    path = tmp_path / "data.jsonl"
    lines = [
        json.dumps({"instruction": "a", "output": "b"}),
        "{not json",
        json.dumps(["a", "b"]),
        "",
        json.dumps({"instruction": "  ", "output": "b"}),
        json.dumps({"output": "b"}),
        json.dumps({"instruction": "a", "input": 3, "output": "b"}),
        json.dumps({"instruction": "a", "input": None, "output": "c"}),
        json.dumps({"instruction": "a", "output": ""}),
    ]
    path.write_text("\n".join(lines) + "\n")
    records, skipped = read_instructions(path)
    assert records == [{"instruction": "a", "input": "", "output": "b"}, {"instruction": "a", "input": "", "output": "c"}]
    assert skipped == {"not JSON": 1, "not a JSON object": 1, "empty 'instruction'": 1, "missing 'instruction'": 1,
                       "'input' is not a string": 1, "empty 'output'": 1}
    assert skipped.examples[:3] == [f"{path}:2: not JSON", f"{path}:3: not a JSON object",
                                    f"{path}:5: empty 'instruction'"]
    assert len(skipped.examples) == 5  # only the first few are reported


def test_json_array_file_with_line_numbers(tmp_path):
    path = tmp_path / "alpaca_data.json"
    path.write_text('[\n  {"instruction": "a", "input": "", "output": "b"},\n  {"instruction": "c"},\n'
                    '  {"instruction": "d", "output": "e"}\n]\n')
    records, skipped = read_instructions(path)
    assert [r["instruction"] for r in records] == ["a", "d"]
    assert skipped.examples == [f"{path}:3: missing 'output'"]
    path.write_text('[{"instruction": "a", "output": "b"} {"x": 1}]')
    with pytest.raises(InstructionDataError, match=r"alpaca_data\.json:1: the JSON array is malformed"):
        read_instructions(path)


def test_empty_or_all_bad_file_is_an_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n  \n")
    with pytest.raises(InstructionDataError, match=r"empty\.jsonl: the file is empty"):
        read_instructions(path)
    path.write_text('{"instruction": "a"}\nnope\n')
    with pytest.raises(InstructionDataError, match=r"no valid instruction record \(.*missing 'output': 1"):
        read_instructions(path)
    with pytest.raises(InstructionDataError, match="not found"):
        read_instructions(tmp_path / "absent.jsonl")


# --- tokenizing ----------------------------------------------------------------------------


def test_labels_mask_exactly_the_prompt(tok, sp):
    t = load_template("alpaca")
    record = {"instruction": "把下面的句子翻译成英文。", "input": "今天天气很好。", "output": "The weather is nice today."}
    ex = tokenize_example(tok, t, record, cutoff_len=512)
    prompt_ids = [1, *sp.encode(t.prompt(record["instruction"], record["input"]))]
    full_ids = [1, *sp.encode(t.prompt(record["instruction"], record["input"], record["output"]))]
    assert ex["input_ids"] == full_ids + [2]
    assert ex["input_ids"][: len(prompt_ids)] == prompt_ids  # the prompt tokens are a prefix
    n = len(prompt_ids)
    assert ex["labels"][:n] == [IGNORE_INDEX] * n
    assert ex["labels"][n:] == ex["input_ids"][n:] and ex["labels"][-1] == 2
    assert sp.decode(ex["labels"][n:-1]) == record["output"]
    assert ex["attention_mask"] == [1] * len(full_ids + [2])
    trained = tokenize_example(tok, t, record, train_on_inputs=True)
    assert trained["labels"] == trained["input_ids"]


def test_truncation_drops_eos_and_short_examples_get_it(tok):
    t = load_template("alpaca")
    record = {"instruction": "Say something.", "output": "word " * 200}
    ex = tokenize_example(tok, t, record, cutoff_len=128)
    assert len(ex["input_ids"]) == 128 and ex["input_ids"][-1] != 2  # truncated: no EOS
    assert IGNORE_INDEX in ex["labels"] and ex["labels"][-1] != IGNORE_INDEX
    short = tokenize_example(tok, t, {"instruction": "Say hi.", "output": "Hi."}, cutoff_len=128)
    assert short["input_ids"][-1] == 2 and len(short["input_ids"]) < 128
    no_eos = tokenize_example(tok, t, {"instruction": "Say hi.", "output": "Hi."}, cutoff_len=128, add_eos=False)
    assert no_eos["input_ids"] == short["input_ids"][:-1]
    # Exactly cutoff_len long before EOS: that is truncation too (alpaca-lora's rule).
    exact = len(short["input_ids"]) - 1
    at_limit = tokenize_example(tok, t, {"instruction": "Say hi.", "output": "Hi."}, cutoff_len=exact)
    assert at_limit["input_ids"] == short["input_ids"][:-1]


def test_instruction_dataset_split_and_collate(tok, tmp_path):
    t = load_template("alpaca")
    path = tmp_path / "mixed.jsonl"
    text = (INSTRUCTIONS / "en.jsonl").read_text() + (INSTRUCTIONS / "zh.jsonl").read_text()
    long_prompt = json.dumps({"instruction": "x " * 400, "output": "y"})
    path.write_text(text + "not json\n" + long_prompt + "\n")
    ds = InstructionDataset(path, tok, t, cutoff_len=256)
    assert len(ds) == 30
    assert ds.skipped == {"not JSON": 1, "prompt fills cutoff_len 256": 1}
    assert len(ds.lengths) == 30 and ds.lengths.max() <= 256
    # Batched tokenization gives what one record at a time gives.
    assert all(ds[i] == tokenize_example(tok, t, ds.records[i], cutoff_len=256) for i in range(len(ds)))
    train, val = split(ds, 5, seed=0)
    assert len(train) == 25 and len(val) == 5
    assert split(ds, 5, seed=0)[1].indices == val.indices and split(ds, 5, seed=1)[1].indices != val.indices
    assert set(train.indices).isdisjoint(val.indices)
    batch = Collator(pad_id=tok.pad_token_id)([train[0], train[1], train[2]])
    lengths = batch["attention_mask"].sum(dim=1)
    for k in range(3):
        row = batch["labels"][k]
        assert (row[lengths[k]:] == IGNORE_INDEX).all()
        assert row[: lengths[k]].tolist() == train[k]["labels"]
    with pytest.raises(ValueError, match="val_set_size"):
        split(ds, 30, seed=0)


def test_all_prompts_too_long_is_an_error(tok, tmp_path):
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps({"instruction": "x " * 100, "output": "y"}) + "\n")
    with pytest.raises(InstructionDataError, match="no record has a token to train on within cutoff_len 16 \(prompt fills cutoff_len 16\)"):
        InstructionDataset(path, tok, load_template("alpaca"), cutoff_len=16)


@pytest.mark.parametrize("template", ["alpaca", "alpaca_zh"])
def test_prompt_tokens_are_a_prefix_of_the_full_example_for_every_sample(tok, template):
    """Masking by the prompt's token count is only right if the prompt tokenizes to a prefix of prompt +
    answer (the template ends with a newline, a token BPE never merges across)."""
    t = load_template(template)
    for name in ("en.jsonl", "zh.jsonl"):
        for record in read_instructions(INSTRUCTIONS / name)[0]:
            ex = tokenize_example(tok, t, record, cutoff_len=1024)
            prompt = tok(t.prompt(record["instruction"], record["input"]))["input_ids"]
            assert ex["input_ids"][: len(prompt)] == prompt
            assert ex["labels"].count(IGNORE_INDEX) == len(prompt)
            assert tok.decode(ex["labels"][len(prompt):-1]) == record["output"]


@pytest.mark.slow  # importing the LLaMA modelling code takes a few seconds
def test_a_collated_instruction_batch_trains_a_tiny_llama(tok):
    """The batch is what LlamaForCausalLM expects: a finite loss over the answer tokens only."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=3000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=128, max_position_embeddings=512)
    check_vocab(tok, config.vocab_size, "tiny llama")
    model = LlamaForCausalLM(config)
    t = load_template("alpaca_zh")
    records = read_instructions(INSTRUCTIONS / "zh.jsonl")[0][:4]
    batch = Collator(pad_id=tok.pad_token_id)([tokenize_example(tok, t, r, cutoff_len=256) for r in records])
    loss = model(**batch).loss
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert model.model.embed_tokens.weight.grad is not None
