"""train.generate: loading (adapters for another base refused), decoding validation, EOS vs length,
streaming, batch case files with bad lines, the interactive loop, --run-ie-cases.

Real tiny LLaMA checkpoints and a real peft adapter (tests/gen_helpers.py); the "steered" model
writes a known token then EOS, so finish reasons are asserted exactly.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from gen_helpers import make_adapter, make_base, make_steered
from train.cli import generate_main as main
from train.generate import (Decoding, GenerateError, Generator, Output, check_adapter, interactive, load_model,
                            read_cases, run_cases)
from train.tokenizer import load_tokenizer

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "hello world"  # the steered model flips on its last token


@pytest.fixture(scope="module")
def models(tmp_path_factory, tokenizer_path):
    tmp = tmp_path_factory.mktemp("gen")
    tok = load_tokenizer(tokenizer_path)
    flip = tok(PROMPT)["input_ids"][-1]
    word = tok("好", add_special_tokens=False)["input_ids"][-1]
    base = make_base(tmp / "base", tokenizer_path)
    return {
        "tmp": tmp,
        "base": base,
        "adapter": make_adapter(tmp / "adapter", base),
        "steered": make_steered(tmp / "steered", tokenizer_path, flip, word),
        "word": tok.decode([word]),
    }


@pytest.fixture(scope="module")
def steered(models):
    model, tok = load_model(models["steered"])
    return Generator(model, tok)


@pytest.fixture(scope="module")
def random_gen(models):
    model, tok = load_model(models["base"], models["adapter"])
    return Generator(model, tok, default_mode="instruction")


# ---------------------------------------------------------------------------------------------
# Decoding settings


def test_defaults_are_camas():
    d = Decoding()
    assert (d.num_beams, d.temperature, d.top_p, d.top_k, d.repetition_penalty, d.max_new_tokens) == \
        (2, 0.2, 0.75, 40, 1.3, 512)
    assert not d.do_sample
    # Without sampling, temperature/top-p/top-k are not passed (transformers would ignore them and warn).
    assert "temperature" not in d.generation_kwargs()
    assert Decoding(do_sample=True).generation_kwargs()["top_k"] == 40


@pytest.mark.parametrize("key,value,rule", [
    ("temperature", 0, "> 0"), ("temperature", -1.0, "> 0"), ("top_p", 0, "(0, 1]"), ("top_p", 1.5, "(0, 1]"),
    ("top_k", -1, "≥ 0"), ("num_beams", 0, "≥ 1"), ("repetition_penalty", 0, "> 0"), ("max_new_tokens", 0, "≥ 1"),
])
def test_out_of_range_decoding_is_refused(key, value, rule):
    with pytest.raises(GenerateError, match=f"{key} must be .*{__import__('re').escape(rule)}"):
        Decoding(**{key: value})


def test_decoding_types_and_unknown_keys():
    with pytest.raises(GenerateError, match="num_beams must be an integer"):
        Decoding(num_beams=1.5)
    with pytest.raises(GenerateError, match="temperature must be a number, got '0.5'"):
        Decoding.from_dict({"temperature": "0.5"})
    with pytest.raises(GenerateError, match="do_sample must be true or false"):
        Decoding.from_dict({"do_sample": 1})
    with pytest.raises(GenerateError, match="unknown decoding key 'beams'"):
        Decoding.from_dict({"beams": 2})
    assert Decoding.from_dict({"top_p": 1, "top_k": 0}).top_p == 1.0


# ---------------------------------------------------------------------------------------------
# EOS vs length, batches, streaming


def test_eos_and_length_are_reported(steered, models):
    word = models["word"]
    # Batched (left padding): the prompt ending on the flip token writes the word then EOS; another
    # prompt gets EOS at once.
    out = steered.generate([PROMPT, "something else entirely"], Decoding(max_new_tokens=8))
    assert out[0] == Output(word, "eos", 1)
    assert out[1] == Output("", "eos", 0)
    # Cut before EOS: the word fills max_new_tokens.
    assert steered.generate([PROMPT], Decoding(max_new_tokens=1)) == [Output(word, "length", 1)]


def test_random_model_is_cut_at_the_length_limit(random_gen):
    prompts = [random_gen.prompt("Say hello"), random_gen.prompt("写一首诗", "春天的江南")]
    out = random_gen.generate(prompts, Decoding(max_new_tokens=6, num_beams=1))
    assert [o.finish for o in out] == ["length", "length"] and [o.new_tokens for o in out] == [6, 6]
    # Left padding does not change a row's greedy answer.
    assert random_gen.generate(prompts[1:], Decoding(max_new_tokens=6, num_beams=1))[0] == out[1]


def test_streaming_yields_pieces_then_the_result(random_gen, steered, models):
    d = Decoding(num_beams=1, max_new_tokens=12)
    prompt = random_gen.prompt("Say hello")
    pieces = list(random_gen.stream(prompt, d))
    *texts, result = pieces
    assert isinstance(result, Output) and result.finish == "length" and result.new_tokens == 12
    assert len(texts) > 1 and "".join(texts) == result.text == random_gen.generate([prompt], d)[0].text
    # EOS through the streamer.
    assert list(steered.stream(PROMPT, d)) == [models["word"], Output(models["word"], "eos", 1)]
    # Beam search cannot stream: one piece when complete.
    beams = list(random_gen.stream(prompt, Decoding(num_beams=2, max_new_tokens=5)))
    assert len(beams) == 2 and beams[0] == beams[1].text


def test_a_stop_request_ends_generation(random_gen):
    stop = threading.Event()
    stop.set()
    out = random_gen.generate([random_gen.prompt("Say hello")], Decoding(num_beams=1, max_new_tokens=50), stop)[0]
    assert out.finish == "stopped" and out.new_tokens < 50
    *_, result = random_gen.stream(random_gen.prompt("Say hello"), Decoding(num_beams=1, max_new_tokens=50), stop)
    assert result.finish == "stopped" and result.new_tokens < 50
    # A caller that stops reading a stream stops the generation: the model is free again at once
    # (all 900 tokens take about 30 s on one CPU core).
    pieces = random_gen.stream(random_gen.prompt("Say hello"),
                               Decoding(num_beams=1, max_new_tokens=900, repetition_penalty=1.0))
    next(pieces)
    pieces.close()
    assert random_gen.lock.acquire(timeout=10)
    random_gen.lock.release()


# ---------------------------------------------------------------------------------------------
# Loading


def test_adapter_is_loaded(random_gen):
    from peft import PeftModel

    assert isinstance(random_gen.model, PeftModel)
    assert random_gen.tokenizer.padding_side == "left"


def test_adapter_for_another_base_is_refused(models, tokenizer_path):
    tmp = models["tmp"]
    # Another model in a folder of the same name (so the recorded name matches): shapes decide.
    wider = make_base(tmp / "other" / "base", tokenizer_path, hidden_size=48)
    with pytest.raises(GenerateError, match=r"lora_A\.weight has shape \[4, 32\], but .*q_proj of the base model "
                                            r".* has in_features 48: the adapter was made for another base model"):
        load_model(wider, models["adapter"])
    deeper = make_base(tmp / "deep" / "base", tokenizer_path, num_hidden_layers=3)
    deep_adapter = make_adapter(tmp / "deep" / "adapter", deeper)
    with pytest.raises(GenerateError, match=r"adapts module 'model\.layers\.2\.self_attn\.(q|v)_proj', which the base "
                                            r"model .* does not have"):
        load_model(models["base"], deep_adapter, ignore_base_name=True)


def test_adapter_recorded_for_another_base_name(models):
    renamed = models["tmp"] / "llama-other"
    shutil.copytree(models["base"], renamed)
    with pytest.raises(GenerateError, match=r"was made for the base model '.*/base', not '.*llama-other' "
                                            r"\(base_model_name_or_path in adapter_config.json\)"):
        load_model(renamed, models["adapter"])
    model, tok = load_model(renamed, models["adapter"], ignore_base_name=True)  # shapes still match
    assert type(model).__name__ == "PeftModel"


def test_bad_adapter_folders(models, random_gen, tmp_path):
    with pytest.raises(GenerateError, match="not a folder"):
        check_adapter(tmp_path / "missing", models["base"], random_gen.model)
    (tmp_path / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    with pytest.raises(GenerateError, match="no adapter_model.safetensors or adapter_model.bin"):
        check_adapter(tmp_path, models["base"], random_gen.model)
    (tmp_path / "adapter_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(GenerateError, match="adapter_model.safetensors: cannot read the adapter weights"):
        check_adapter(tmp_path, models["base"], random_gen.model)


def test_load_errors(models, tmp_path):
    with pytest.raises(GenerateError, match="no config.json"):
        load_model(tmp_path)
    with pytest.raises(GenerateError, match="--load-8bit needs a CUDA GPU"):
        load_model(models["base"], load_8bit=True, device="cpu")


# ---------------------------------------------------------------------------------------------
# Case files


def test_bad_case_lines_are_reported_and_skipped(tmp_path):
    path = tmp_path / "cases.jsonl"
    lines = [
        '{"id": "a", "prompt": "Once upon a time"}',
        '{"id": "b", "instruction": "Translate", "input": "你好"}',
        "{not json",
        "[1, 2]",
        '{"prompt": "x", "instruction": "y"}',
        '{"id": "c"}',
        '{"instruction": "   "}',
        '{"instruction": "x", "input": 3}',
        '{"prompt": "x", "input": "y"}',
        '{"id": [1], "prompt": "x"}',
        "",
        '{"instruction": "Write a poem"}',
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cases, bad = read_cases(path)
    assert [(c.id, c.mode, c.where) for c in cases] == [
        ("a", "continuation", f"{path}:1"), ("b", "instruction", f"{path}:2"), (None, "instruction", f"{path}:12")]
    assert bad == [
        f"{path}:3: not JSON (Expecting property name enclosed in double quotes at column 2)",
        f"{path}:4: not a JSON object",
        f"{path}:5: both 'prompt' and 'instruction' (one case is either a continuation or an instruction)",
        f"{path}:6: neither 'prompt' (continuation) nor 'instruction'",
        f"{path}:7: 'instruction' must be a non-empty string",
        f"{path}:8: 'input' must be a string",
        f"{path}:9: 'input' goes with 'instruction', not with 'prompt'",
        f"{path}:10: 'id' must be a string or an integer",
    ]
    path.write_text("{bad\n[]\n", encoding="utf-8")
    with pytest.raises(GenerateError, match=r"no valid case; 2 bad line\(s\), the first: .*:1: not JSON"):
        read_cases(path)
    with pytest.raises(GenerateError, match="case file not found"):
        read_cases(tmp_path / "missing.jsonl")


def test_shipped_case_files_are_valid():
    for name, mode in (("pretrain", "continuation"), ("general", "instruction"), ("ie", "instruction")):
        cases, bad = read_cases(ROOT / "examples" / "cases" / f"{name}.jsonl")
        assert not bad and len(cases) >= 10 and {c.mode for c in cases} == {mode}
        ids = [c.id for c in cases]
        assert len(set(ids)) == len(ids) and None not in ids
    langs = {c.id.split("-")[1] for c in read_cases(ROOT / "examples/cases/general.jsonl")[0]}
    assert langs == {"zh", "en"}


def test_ie_case_file_matches_the_gold_set():
    from train.ie_eval import instruction, read_ie_cases

    gold, bad = read_ie_cases(ROOT / "examples/data/ie_eval/cases.jsonl")
    assert not bad
    cases, _ = read_cases(ROOT / "examples/cases/ie.jsonl")
    assert [(c.record["id"], c.record["instruction"], c.record["input"]) for c in cases] == \
        [(g.id, instruction(g), g.text) for g in gold]


def test_run_cases_keeps_order_and_records(steered, models):
    from train.generate import Case

    cases = [Case("f:1", {"id": 1, "prompt": "something else"}, "continuation"),
             Case("f:2", {"id": "x", "prompt": PROMPT, "note": "kept"}, "continuation"),
             Case("f:3", {"instruction": "hi"}, "instruction")]
    out = run_cases(steered, cases, Decoding(max_new_tokens=1), batch_size=2)
    assert [(r.get("id"), r["mode"], r["output"], r["finish"]) for r in out] == [
        (1, "continuation", "", "eos"), ("x", "continuation", models["word"], "length"), (None, "instruction", "", "eos")]
    assert out[1]["note"] == "kept" and out[1]["new_tokens"] == 1


@pytest.mark.slow
def test_cli_batch_mode(models, tmp_path):
    """The real command line in a subprocess: bad lines reported and skipped, output atomic."""
    cases = tmp_path / "cases.jsonl"
    cases.write_text("\n".join([json.dumps({"id": "flip", "prompt": PROMPT}), "oops",
                                json.dumps({"id": "eos", "instruction": "Say hi", "input": ""})]) + "\n")
    out = tmp_path / "out" / "results.jsonl"
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-m", "train.generate", "--base", str(models["steered"]), "--cases",
                          str(cases), "--out", str(out), "--max-new-tokens", "1", "--batch-size", "4"],
                         cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert f"skipped {cases}:2: not JSON" in run.stderr
    assert "2 cases → " in run.stderr and "(eos 1, length 1); 1 bad line(s) skipped" in run.stderr
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["id"], r["finish"], r["output"]) for r in records] == [("flip", "length", models["word"]), ("eos", "eos", "")]
    assert sorted(p.name for p in out.parent.iterdir()) == ["results.jsonl"]  # no temporary left behind


def test_cli_errors(models, tmp_path, capsys):
    cases = tmp_path / "cases.jsonl"
    cases.write_text(json.dumps({"prompt": "x"}) + "\n")
    out = tmp_path / "out.jsonl"
    assert main(["--base", str(models["base"]), "--cases", str(cases), "--out", str(out), "--temperature", "0"]) == 2
    assert "error: temperature must be > 0, got 0.0" in capsys.readouterr().err
    assert main(["--base", str(models["base"]), "--cases", str(cases), "--out", str(out), "--top-p", "1.01"]) == 2
    assert "error: top_p must be in (0, 1], got 1.01" in capsys.readouterr().err
    assert main(["--base", str(models["base"]), "--load-8bit", "--device", "cpu", "--cases", str(cases),
                 "--out", str(out)]) == 2
    assert "--load-8bit needs a CUDA GPU" in capsys.readouterr().err
    assert main(["--base", str(models["base"]), "--lora", str(models["adapter"]), "--cases", str(tmp_path / "no.jsonl"),
                 "--out", str(out)]) == 2
    assert "case file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--base", str(models["base"]), "--cases", str(cases)])  # --out missing
    assert "--cases needs --out FILE" in capsys.readouterr().err
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# Interactive and IE cases


def test_interactive_streams_and_reports_finish(steered, random_gen, models):
    out, err = io.StringIO(), io.StringIO()
    n = interactive(steered, Decoding(num_beams=1, max_new_tokens=8), "continuation",
                    stdin=io.StringIO(f"{PROMPT}\nsomething else\n"), stdout=out, stderr=err)
    assert n == 2
    assert out.getvalue() == f"{models['word']}\n\n"
    assert err.getvalue() == "[finish: eos, 1 new tokens]\n[finish: eos, 0 new tokens]\n"
    out, err = io.StringIO(), io.StringIO()
    n = interactive(random_gen, Decoding(num_beams=2, max_new_tokens=4), "instruction",
                    stdin=io.StringIO("Translate\n你好\nSay hi\n\n"), stdout=out, stderr=err)
    assert n == 2 and err.getvalue().startswith("note: beam search (num_beams=2) cannot stream")
    assert err.getvalue().count("[finish: length, 4 new tokens]") == 2


def test_run_ie_cases_prints_the_table(models, tmp_path, capsys):
    out = tmp_path / "ie.jsonl"
    rc = main(["--base", str(models["base"]), "--lora", str(models["adapter"]), "--run-ie-cases",
               str(ROOT / "examples/data/ie_eval/cases.jsonl"), "--out", str(out), "--max-new-tokens", "3",
               "--num-beams", "1", "--batch-size", "20"])
    assert rc == 0
    table = capsys.readouterr().out
    rows = [line.split()[0] for line in table.splitlines() if line and not line.startswith("-")]
    assert rows == ["task", "NER", "RE", "EE", "trigger", "argument", "overall"]
    assert "overall        20    54" in table
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 20 and {r["finish"] for r in records} == {"length"}
    assert all(r["new_tokens"] == 3 for r in records)


def test_cli_says_what_it_is_doing_when_stderr_is_a_file(models, tmp_path, capsys):
    cases = tmp_path / "cases.jsonl"
    cases.write_text("\n".join(json.dumps({"id": k, "prompt": PROMPT}) for k in range(3)) + "\n")
    out = tmp_path / "out.jsonl"
    assert main(["--base", str(models["steered"]), "--cases", str(cases), "--out", str(out), "--max-new-tokens", "2",
                 "--batch-size", "2"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"loading model {models['steered']} …"
    assert err[1].startswith("model loaded in ") and err[1].endswith(" s on cpu")
    assert err[2] == "3 case(s), in batches of up to 2"
    assert [line.split(",")[0] for line in err[3:5]] == ["case 2/3 done", "case 3/3 done"]
    assert all(" new tokens in " in line and line.endswith(" tokens/s") for line in err[3:5])
    assert "\r" not in "".join(err)  # plain lines, no progress bar


def test_a_case_file_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"id": "a", "prompt": "x"}).encode() + b"\n")
    cases, bad = read_cases(path)
    assert [c.id for c in cases] == ["a"] and bad == []


# --- the adapter's base by fingerprint ------------------------------------------------------


@pytest.fixture(scope="module")
def recorded(models):
    """An adapter with the record train.lora writes: base_model.json, the base's fingerprint."""
    from train.base_identity import write_record

    adapter = models["tmp"] / "recorded-adapter"
    shutil.copytree(models["adapter"], adapter)
    write_record(adapter, models["base"])
    return adapter


def test_a_moved_base_is_recognised_by_its_fingerprint(models, recorded, tmp_path):
    moved = tmp_path / "elsewhere" / "renamed-base"
    shutil.copytree(models["base"], moved)
    model, _ = load_model(moved, recorded)  # no --ignore-base-name: the path differs, the model does not
    assert type(model).__name__ == "PeftModel"
    # Re-sharded (other files, same tensors): the same model.
    from transformers import LlamaForCausalLM

    from train.base_identity import base_fingerprint

    resharded = tmp_path / "resharded"
    LlamaForCausalLM.from_pretrained(str(models["base"])).save_pretrained(str(resharded), max_shard_size="100KB")
    assert len(list(resharded.glob("*.safetensors"))) > 1
    assert base_fingerprint(resharded)["fingerprint"] == base_fingerprint(models["base"])["fingerprint"]


def test_another_base_of_the_same_shapes_is_refused_naming_both_fingerprints(models, recorded, tokenizer_path, tmp_path):
    from train.base_identity import base_fingerprint

    other = make_base(tmp_path / "base", tokenizer_path, seed=1)  # same name, same shapes, other weights
    theirs, ours = base_fingerprint(models["base"])["fingerprint"], base_fingerprint(other)["fingerprint"]
    assert theirs != ours
    with pytest.raises(GenerateError, match=rf"made for the base model with fingerprint {theirs} \(trained at "
                                            rf".*\), but --base {other} has fingerprint {ours}"):
        load_model(other, recorded)
    model, _ = load_model(other, recorded, ignore_base_name=True)  # asked for: applied (the shapes fit)
    assert type(model).__name__ == "PeftModel"


def test_a_base_with_a_recover_manifest_is_fingerprinted_by_it(models, tmp_path):
    from train.base_identity import base_fingerprint, same_base

    restored = tmp_path / "restored"
    shutil.copytree(models["base"], restored)
    tensors = {"model.embed_tokens.weight": {"shape": [3000, 32], "tuned": {"dtype": "float32", "sha256": "a" * 64}}}
    manifest = {"format": "cama-recover-manifest", "version": 1, "hash": "sha256", "tensors": tensors}
    (restored / "recover-manifest.json").write_text(json.dumps(manifest))
    fp = base_fingerprint(restored)
    plain = base_fingerprint(models["base"])
    assert fp["method"] == "manifest" and fp["fingerprint"] != plain["fingerprint"]
    assert fp["sampled"] == plain["sampled"]
    # Recorded with the manifest, checked on a copy without it (or the other way round): the tensors decide.
    assert same_base({**fp, "path": "x"}, models["base"])[0]
    assert same_base({**plain, "path": "x"}, restored)[0]
    tensors["model.embed_tokens.weight"]["tuned"]["sha256"] = "b" * 64
    other = tmp_path / "other"
    shutil.copytree(restored, other)
    (other / "recover-manifest.json").write_text(json.dumps(manifest))
    assert not same_base({**fp, "path": "x"}, other)[0]  # both have manifests: theirs decide


# --- chat: a conversation with its history --------------------------------------------------


class Recording(Generator):
    """The real generator, remembering the prompts it was given."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.prompts = []

    def stream(self, prompt, *args, **kwargs):
        self.prompts.append(prompt)
        yield from super().stream(prompt, *args, **kwargs)


def test_chat_keeps_the_history_and_formats_it_with_the_template(random_gen):
    from train.chat import load_chat_template, render

    gen = Recording(random_gen.model, random_gen.tokenizer, default_mode="instruction")
    assert gen.chat_template == load_chat_template("alpaca_chat")[0]  # saved with the base (save_tokenizer)
    d = Decoding(num_beams=1, max_new_tokens=5)
    out, err = io.StringIO(), io.StringIO()
    n = interactive(gen, d, "chat", stdin=io.StringIO("Hello\n你好吗？\\n请回答\n/reset\nHello\n\n"), stdout=out,
                    stderr=err, system="Be brief.")
    assert n == 3 and len(gen.prompts) == 3
    system = {"role": "system", "content": "Be brief."}
    first = [system, {"role": "user", "content": "Hello"}]
    a1 = random_gen.generate([render(gen.tokenizer, first, add_generation_prompt=True)], d)[0].text
    second = [*first, {"role": "assistant", "content": a1}, {"role": "user", "content": "你好吗？\n请回答"}]
    assert gen.prompts == [render(gen.tokenizer, m, add_generation_prompt=True) for m in (first, second, first)]
    assert gen.prompts[1].startswith(gen.prompts[0] + a1 + "</s>")  # the first answer goes with the second message
    a2 = random_gen.generate([gen.prompts[1]], d)[0].text
    assert out.getvalue() == f"{a1}\n{a2}\n{a1}\n"
    assert err.getvalue().splitlines() == ["[finish: length, 5 new tokens]"] * 2 + ["[a new conversation]",
                                                                                  "[finish: length, 5 new tokens]"]
    # The prompt starts with the template's BOS: no second one is added.
    enc = gen._encode([gen.prompts[0]])
    assert enc["input_ids"][0].tolist().count(gen.tokenizer.bos_token_id) == 1


def test_a_long_history_loses_its_oldest_turns(models, tokenizer_path, tmp_path):
    short = make_base(tmp_path / "short", tokenizer_path, max_position_embeddings=96)
    model, tok = load_model(short)
    gen = Recording(model, tok)
    out, err = io.StringIO(), io.StringIO()
    lines = "".join(f"Please tell me about topic number {k} in a few words.\n" for k in range(3))
    assert interactive(gen, Decoding(num_beams=1, max_new_tokens=8), "chat", stdin=io.StringIO(lines), stdout=out,
                       stderr=err) == 3
    assert "[history: the oldest 2 messages left out to fit the model's context]" in err.getvalue()
    assert "topic number 0" not in gen.prompts[-1] and "topic number 2" in gen.prompts[-1]
    assert all(len(tok(p, add_special_tokens=False)["input_ids"]) + 8 <= 96 for p in gen.prompts)


def test_generate_chat_on_the_command_line(models, random_gen, monkeypatch, capsys, tmp_path):
    """``--chat`` through stdin; the adapter's saved chat template wins over the base's, and
    --chat-template over both."""
    from train.chat import load_chat_template, render, use_chat_template
    from train.tokenizer import save_tokenizer

    adapter = tmp_path / "adapter"
    shutil.copytree(models["adapter"], adapter)
    tok = load_tokenizer(models["base"])
    use_chat_template(tok, "llama2_chat")
    save_tokenizer(tok, adapter)  # what train.lora's export does
    llama2 = load_chat_template("llama2_chat")[0]
    assert load_model(models["base"], adapter)[1].chat_template == llama2
    d = Decoding(num_beams=1, max_new_tokens=4)

    def answer(template, *messages):
        history = [{"role": "user" if k % 2 == 0 else "assistant", "content": m} for k, m in enumerate(messages)]
        return random_gen.generate([render(random_gen.tokenizer, history, True, template)], d)[0].text

    args = ["--base", str(models["base"]), "--chat", "--num-beams", "1", "--max-new-tokens", "4"]
    monkeypatch.setattr(sys, "stdin", io.StringIO("Hi\nAgain\n"))
    assert main([*args, "--lora", str(adapter)]) == 0
    a1 = answer(llama2, "Hi")
    assert capsys.readouterr().out == f"{a1}\n{answer(llama2, 'Hi', a1, 'Again')}\n"
    zh = load_chat_template("alpaca_chat_zh")[0]
    monkeypatch.setattr(sys, "stdin", io.StringIO("你好\n"))
    assert main([*args, "--lora", str(adapter), "--chat-template", "alpaca_chat_zh"]) == 0
    assert capsys.readouterr().out == f"{answer(zh, '你好')}\n"
    assert main([*args, "--chat-template", "chatml"]) == 2
    assert "error: unknown chat template 'chatml'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--base", str(models["base"]), "--interactive", "--system", "x"])
    assert "--system goes with --chat" in capsys.readouterr().err
