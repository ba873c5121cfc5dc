"""train.chat: conversation records (messages and ShareGPT), the chat template stored with the tokenizer,
and the loss mask on assistant turns — checked token by token against the decoded text, against
transformers' own ``{% generation %}`` mask, and against the alpaca path it must agree with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from train.chat import (DEFAULT_CHAT_TEMPLATE, IGNORE_INDEX, ChatTemplateError, assistant_spans, check_chat_template,
                        fit_history, load_chat_template, render, tokenize_conversations, use_chat_template)
from train.prompts import InstructionDataset, load_template, read_instructions, tokenize_example
from train.tokenizer import load_tokenizer, save_tokenizer

ROOT = Path(__file__).resolve().parent.parent
CHAT = ROOT / "examples" / "data" / "chat" / "chat.jsonl"
INSTRUCTIONS = ROOT / "examples" / "data" / "instructions"
TEMPLATES = ("alpaca_chat", "alpaca_chat_zh", "llama2_chat")


@pytest.fixture(scope="module")
def tok(tokenizer_path):
    return load_tokenizer(tokenizer_path.parent)


@pytest.fixture(scope="module")
def sample():
    records, skipped = read_instructions(CHAT)
    assert not skipped
    return records


def conv(*turns: str, system: str | None = None) -> list[dict[str, str]]:
    out = [{"role": "system", "content": system}] if system else []
    return out + [{"role": "user" if k % 2 == 0 else "assistant", "content": t} for k, t in enumerate(turns)]


# --- records -------------------------------------------------------------------------------


def test_the_bundled_sample_reads_in_both_layouts(sample):
    raw = [json.loads(line) for line in CHAT.read_text(encoding="utf-8").splitlines()]
    assert len(sample) == len(raw) == 32
    assert sum("conversations" in r for r in raw) == 12
    for record, source in zip(sample, raw):
        turns = source.get("messages") or source["conversations"]
        assert [m["content"] for m in record["messages"]] == [t.get("content", t.get("value")) for t in turns]
        roles = [m["role"] for m in record["messages"]]
        assert set(roles) <= {"system", "user", "assistant"} and "assistant" in roles
    # ShareGPT's roles are mapped: human → user, gpt → assistant.
    sharegpt = next(r for r, s in zip(sample, raw)
                    if "conversations" in s and s["conversations"][0]["from"] == "system")
    assert [m["role"] for m in sharegpt["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    langs = {s["id"][:2] for s in raw}
    assert langs == {"zh", "en"}


def test_bad_conversations_are_counted_by_reason_with_their_line(tmp_path):
    good = {"messages": conv("hi", "hello")}
    lines = [
        good,
        {"instruction": "a", "output": "b"},                                               # alpaca, kept
        {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},  # kept
        {"messages": [{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}]},
        {"messages": []},
        {"messages": conv("only a question")},
        {"messages": conv("q", "a") + [{"role": "assistant", "content": "again"}]},
        {"messages": [{"role": "assistant", "content": "first"}, {"role": "user", "content": "q"}]},
        {"messages": conv("q", "a") + [{"role": "system", "content": "late"}]},
        {"messages": [{"role": "user", "content": "  "}, {"role": "assistant", "content": "a"}]},
        {"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "a"}]},
        {"messages": "q"},
        {"messages": conv("q", "a"), "conversations": []},
        {"conversations": [{"from": "human", "value": "q"}, {"value": "a"}]},
        {"messages": [{"role": "system", "content": "s"}]},
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    records, skipped = read_instructions(path)
    assert records == [good, {"instruction": "a", "input": "", "output": "b"}, {"messages": conv("q", "a")}]
    assert skipped == {"unknown role 'bot'": 1, "an empty conversation": 1, "no assistant turn": 1,
                       "turns do not alternate user/assistant": 1, "the first turn is not the user's": 1,
                       "a system message after the first": 1, "an empty message": 1,
                       "a message's 'content' is not a string": 1, "'messages' is not a list": 1,
                       "both 'messages' and 'conversations'": 1, "a message without 'role' (or 'from')": 1,
                       "no user or assistant turn": 1}
    assert skipped.examples == [f"{path}:4: unknown role 'bot': message 1", f"{path}:5: an empty conversation",
                                f"{path}:6: no assistant turn",
                                f"{path}:7: turns do not alternate user/assistant: message 2",
                                f"{path}:8: the first turn is not the user's: message 0"]


# --- the template and where it is stored ---------------------------------------------------


def test_the_chat_template_is_stored_in_tokenizer_config(tok, tmp_path):
    assert tok.chat_template is None
    save_tokenizer(tok, tmp_path / "a")
    default = load_chat_template(DEFAULT_CHAT_TEMPLATE)[0]
    config = json.loads((tmp_path / "a" / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["chat_template"] == default
    assert not (tmp_path / "a" / "chat_template.jinja").exists()
    assert tok.chat_template is None  # the caller's tokenizer is left as it was
    again = load_tokenizer(tmp_path / "a")
    assert again.chat_template == default
    # A chosen template goes with the tokenizer, and replaces the one saved before.
    assert use_chat_template(again, "llama2_chat") == load_chat_template("llama2_chat")[0] == again.chat_template
    save_tokenizer(again, tmp_path / "a")
    assert load_tokenizer(tmp_path / "a").chat_template == load_chat_template("llama2_chat")[0]
    assert use_chat_template(load_tokenizer(tmp_path / "a")) == load_chat_template("llama2_chat")[0]  # its own


def test_bad_chat_templates_are_refused_with_where(tok, tmp_path):
    with pytest.raises(ChatTemplateError, match=r"unknown chat template 'chatml' .*known: alpaca_chat, "
                                                 r"alpaca_chat_zh, llama2_chat"):
        load_chat_template("chatml")
    with pytest.raises(ChatTemplateError, match="chat template file not found"):
        load_chat_template(tmp_path / "none.jinja")
    broken = tmp_path / "broken.jinja"
    broken.write_text("{{ bos_token }}\n{% for m in messages %}{{ m['content'] }\n{% endfor %}")
    with pytest.raises(ChatTemplateError, match=r"broken\.jinja: line 2: the chat template is not valid Jinja"):
        use_chat_template(tok, broken)
    # Only the last message: earlier turns vanish as the conversation grows, so no prefix property.
    last = tmp_path / "last.jinja"
    last.write_text("{{ messages[-1]['content'] }}{% if add_generation_prompt %}>{% endif %}")
    with pytest.raises(ChatTemplateError, match=r"last\.jinja: the chat template does not render a conversation "
                                                 r"turn after turn: rendered up to message 2"):
        use_chat_template(tok, last)
    raising = tmp_path / "raising.jinja"
    raising.write_text("{{ raise_exception('no system messages here') }}")
    with pytest.raises(ChatTemplateError, match=r"raising\.jinja: the chat template cannot render a conversation "
                                                 r"\(.*no system messages here\)"):
        use_chat_template(tok, raising)
    assert tok.chat_template is None  # nothing was set


# --- the assistant mask --------------------------------------------------------------------


def segments(ids: list[int], labels: list[int]) -> list[tuple[bool, list[int]]]:
    """The maximal runs of tokens trained on (True) or not, in order."""
    out: list[tuple[bool, list[int]]] = []
    for token, label in zip(ids, labels):
        trained = label != IGNORE_INDEX
        assert not trained or label == token
        if not out or out[-1][0] != trained:
            out.append((trained, []))
        out[-1][1].append(token)
    return out


def same_text(decoded: str, expected: str) -> bool:
    """Equal but for the LLaMA decoder's spaces: it writes one after a special token (the dummy prefix of
    the text that follows) and drops a run's leading one."""
    def norm(s: str) -> str:
        return s.replace("<s> ", "<s>").replace("</s> ", "</s>").lstrip(" ")
    return norm(decoded) == norm(expected)


@pytest.mark.parametrize("name", TEMPLATES)
def test_labels_cover_exactly_the_assistant_turns_token_by_token(tok, sample, name):
    """Split each example into runs of trained and untrained tokens: the trained runs decode to the
    assistant turns (text and EOS), the others to everything else, in order, nothing across a boundary;
    and transformers' own mask over the templates' {% generation %} blocks is the same, token by token."""
    template = load_chat_template(name)[0]
    conversations = [r["messages"] for r in sample]
    examples = tokenize_conversations(tok, conversations, cutoff_len=4096, template=template)
    for messages, ex in zip(conversations, examples):
        text, spans = assistant_spans(tok, messages, template)
        ids, labels = ex["input_ids"], ex["labels"]
        assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == text.count("<s>")  # no second BOS
        answers = [m["content"] for m in messages if m["role"] == "assistant"]
        closing = " </s>" if name == "llama2_chat" else "</s>"
        assert [text[s:e].strip(" ") for s, e in spans] == [a.strip() + closing for a in answers]
        cuts = [0, *[x for span in spans for x in span], len(text)]
        expected = [(k % 2 == 1, text[cuts[k]:cuts[k + 1]]) for k in range(len(cuts) - 1) if cuts[k] < cuts[k + 1]]
        got = segments(ids, labels)
        assert [trained for trained, _ in got] == [trained for trained, _ in expected]
        for (trained, run), (_, piece) in zip(got, expected):
            assert same_text(tok.decode(run), piece), (name, tok.decode(run), piece)
            if trained:
                assert run[-1] == tok.eos_token_id  # the end of the turn is learned too
        hf = tok.apply_chat_template(messages, chat_template=template, return_dict=True,
                                     return_assistant_tokens_mask=True)
        assert hf["input_ids"] == ids
        assert hf["assistant_masks"] == [int(label != IGNORE_INDEX) for label in labels]


@pytest.mark.parametrize("chat,alpaca", [("alpaca_chat", "alpaca"), ("alpaca_chat_zh", "alpaca_zh")])
def test_a_one_turn_conversation_is_the_alpaca_record(tok, chat, alpaca):
    """Alpaca records and conversations train one format: the default template's one turn without a
    system message gives the alpaca example exactly, ids and labels."""
    template, prompt = load_chat_template(chat)[0], load_template(alpaca)
    records = [r for name in ("en.jsonl", "zh.jsonl") for r in read_instructions(INSTRUCTIONS / name)[0]
               if not r["input"]]
    assert len(records) >= 10
    examples = tokenize_conversations(tok, [conv(r["instruction"], r["output"]) for r in records], 1024,
                                      template=template)
    for record, ex in zip(records, examples):
        assert ex == tokenize_example(tok, prompt, record, cutoff_len=1024)
        assert render(tok, conv(record["instruction"]), True, template) == "<s>" + prompt.prompt(record["instruction"])


def test_sharegpt_and_messages_layouts_tokenize_alike(tok, tmp_path):
    a = {"messages": conv("写一首诗", "春眠不觉晓", "再来一首", "床前明月光", system="你是诗人")}
    b = {"conversations": [{"from": "system", "value": "你是诗人"}, {"from": "human", "value": "写一首诗"},
                           {"from": "gpt", "value": "春眠不觉晓"}, {"from": "human", "value": "再来一首"},
                           {"from": "gpt", "value": "床前明月光"}]}
    path = tmp_path / "two.jsonl"
    path.write_text(json.dumps(a, ensure_ascii=False) + "\n" + json.dumps(b, ensure_ascii=False) + "\n")
    ds = InstructionDataset(path, tok, load_template("alpaca"), cutoff_len=256)
    assert len(ds) == 2 and ds[0] == ds[1]
    assert tok.decode([t for t in ds[0]["labels"] if t != IGNORE_INDEX]) == "春眠不觉晓</s>床前明月光</s>"


def test_cutoff_len_truncation_and_conversations_that_do_not_fit(tok, tmp_path):
    long = conv("Tell me a story.", "Once upon a time " * 40, "More.", "The end.")
    full = tokenize_conversations(tok, [long], cutoff_len=4096)[0]
    cut = tokenize_conversations(tok, [long], cutoff_len=96)[0]
    assert len(cut["input_ids"]) == 96 and cut == {k: v[:96] for k, v in full.items()}
    assert cut["input_ids"][-1] != tok.eos_token_id and cut["labels"][-1] != IGNORE_INDEX  # cut inside the answer
    everything = tokenize_conversations(tok, [long], cutoff_len=96, train_on_inputs=True)[0]
    assert everything["labels"] == everything["input_ids"]
    # Mixed file: alpaca and conversation records keep their order; a conversation whose first answer
    # lies beyond cutoff_len is dropped and counted.
    path = tmp_path / "mixed.jsonl"
    records = [{"instruction": "Say hi.", "output": "Hi."}, {"messages": conv("Hello!", "Hello, how can I help?")},
               {"messages": conv("word " * 80, "ok")}, {"messages": long}]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    ds = InstructionDataset(path, tok, load_template("alpaca"), cutoff_len=96)
    assert len(ds) == 3 and ds.skipped == {"no assistant token within cutoff_len 96": 1}
    assert ds[0] == tokenize_example(tok, load_template("alpaca"), records[0], cutoff_len=96)
    assert ds[1] == tokenize_conversations(tok, [records[1]["messages"]], cutoff_len=96)[0]
    assert ds[2] == cut


def test_the_history_is_cut_from_the_oldest_turns(tok):
    messages = conv("first question", "first answer", "second question", "second answer", "third question",
                    system="be brief")
    text = render(tok, messages, add_generation_prompt=True)
    size = len(tok(text, add_special_tokens=False)["input_ids"])
    assert fit_history(tok, messages, size) == (messages, 0)
    kept, dropped = fit_history(tok, messages, size - 1)
    assert dropped == 2 and kept == [messages[0], *messages[3:]]
    kept, dropped = fit_history(tok, messages, 1)  # the last question always stays
    assert dropped == 4 and kept == [messages[0], messages[-1]]


def test_the_bundled_templates_pass_the_check(tok):
    for name in TEMPLATES:
        check_chat_template(tok, *load_chat_template(name))
