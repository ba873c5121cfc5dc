"""Multi-turn conversations: the record format, the chat template, and tokenizing with the loss on the
assistant's turns only.

Records
-------
``{"messages": [{"role": "system"|"user"|"assistant", "content": "…"}, …]}``, or ShareGPT's
``{"conversations": [{"from": "human"|"gpt"|"system", "value": "…"}, …]}`` (``human`` → user, ``gpt``
and ``chatgpt`` → assistant); either list may hold either shape of message, and other keys of a
record or message are ignored. A conversation is an optional system message, then user and assistant
turns alternating from the user's, with at least one assistant turn (a last user turn without an answer
is kept; it is masked like every user turn). :func:`check_conversation` names what is wrong with any
other: the instruction reader (:func:`train.prompts.read_instructions`) skips and counts it by that
reason, with its ``file:line``, among alpaca records of the same file.

The chat template
-----------------
A Jinja template applied through transformers' ``apply_chat_template``, stored with the tokenizer as
``chat_template`` in ``tokenizer_config.json`` (:func:`train.tokenizer.save_tokenizer`), so every
checkpoint and adapter the suite writes carries the template it was (or will be) tuned with. Bundled
in ``train/templates/*.jinja``: ``alpaca_chat`` (the default: alpaca's layout turn after turn — a
one-turn conversation renders exactly as an alpaca record without input), ``alpaca_chat_zh`` (alpaca_zh's
Chinese description) and ``llama2_chat`` (LLaMA-2-chat's ``[INST]`` layout). Each closes an assistant
turn with EOS, which is what generation stops on.

The assistant mask
------------------
The characters of assistant turn ``k`` are found by rendering the conversation incrementally: from
the end of ``render(messages[:k], add_generation_prompt=True)`` to the end of ``render(messages[:k+1])``
— the turn's text and whatever the template closes it with (EOS). That needs no markup in the template,
only that it renders a conversation as the rendering of its beginning followed by more text (every
usual chat template does; one that rewrites earlier turns is refused, naming the turn). The whole text
is then tokenized once, as generation tokenizes it, and a token is trained on when its characters
overlap an assistant span: the rule transformers' ``return_assistant_tokens_mask`` applies to
``{% generation %}`` blocks, which the bundled templates also have (tests/test_chat.py checks the two
masks agree token for token). The example is cut at ``cutoff_len`` tokens afterwards.

BOS: a rendering that starts with the BOS token's text (chat templates write it) is tokenized without
adding another; otherwise the tokenizer adds its own. Generation follows the same rule
(:func:`adds_bos`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

from common.errors import UserError

__all__ = ["DEFAULT_CHAT_TEMPLATE", "IGNORE_INDEX", "ChatTemplateError", "adds_bos",
           "assistant_spans", "check_chat_template", "check_conversation", "check_messages", "fit_history",
           "is_conversation", "load_chat_template", "render", "template_of", "token_mask", "tokenize_conversations",
           "use_chat_template"]

PathLike = Union[str, "os.PathLike[str]"]
IGNORE_INDEX = -100  # the label the loss skips (torch's cross-entropy default)
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
DEFAULT_CHAT_TEMPLATE = "alpaca_chat"
ROLES = {"system": "system", "user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant",
         "chatgpt": "assistant"}


class ChatTemplateError(UserError, ValueError):
    """A chat template is missing, does not render, or cannot give an assistant mask; names where it came from."""


# --------------------------------------------------------------------------------------------
# Records


def is_conversation(obj: Any) -> bool:
    return isinstance(obj, dict) and ("messages" in obj or "conversations" in obj)


def _message(item: Any) -> tuple[dict[str, str] | None, str]:
    if not isinstance(item, dict):
        return None, "a message is not a JSON object"
    role_key, content_key = ("role", "content") if "role" in item else ("from", "value")
    role = item.get(role_key)
    if role is None:
        return None, "a message without 'role' (or 'from')"
    if not isinstance(role, str) or role.lower() not in ROLES:
        return None, f"unknown role {role!r}"
    content = item.get(content_key)
    if not isinstance(content, str):
        return None, f"a message's '{content_key}' is not a string" if content is not None else \
            f"a message without '{content_key}'"
    if not content.strip():
        return None, "an empty message"
    return {"role": ROLES[role.lower()], "content": content}, ""


def check_messages(items: Any, for_generation: bool = False) -> tuple[list[dict[str, str]] | None, str, str]:
    """``(messages with roles system/user/assistant, "", "")``, or ``(None, reason, detail)`` where
    ``detail`` names the message (``message 3``). Training needs an assistant turn; generation
    (``for_generation``) needs the conversation to end with the user's turn instead."""
    if not isinstance(items, list):
        return None, "the messages are not a list", ""
    if not items:
        return None, "an empty conversation", ""
    messages: list[dict[str, str]] = []
    for k, item in enumerate(items):
        message, reason = _message(item)
        if message is None:
            return None, reason, f"message {k}"
        messages.append(message)
    first = 1 if messages[0]["role"] == "system" else 0
    turns = messages[first:]
    for j, m in enumerate(turns):
        if m["role"] == "system":
            return None, "a system message after the first", f"message {first + j}"
        if m["role"] != ("user" if j % 2 == 0 else "assistant"):
            reason = "the first turn is not the user's" if j == 0 else "turns do not alternate user/assistant"
            return None, reason, f"message {first + j}"
    if not turns:
        return None, "no user or assistant turn", ""
    if for_generation:
        if turns[-1]["role"] != "user":
            return None, "the conversation must end with the user's message", f"message {len(messages) - 1}"
    elif not any(m["role"] == "assistant" for m in turns):
        return None, "no assistant turn", ""
    return messages, "", ""


def check_conversation(obj: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str, str]:
    """A conversation record as ``({"messages": [...]}, "", "")``, or ``(None, reason, detail)``."""
    if "messages" in obj and "conversations" in obj:
        return None, "both 'messages' and 'conversations'", ""
    key = "messages" if "messages" in obj else "conversations"
    messages, reason, detail = check_messages(obj[key])
    if messages is None:
        return None, (f"'{key}' is not a list" if reason == "the messages are not a list" else reason), detail
    return {"messages": messages}, "", ""


# --------------------------------------------------------------------------------------------
# The template


def load_chat_template(name_or_path: PathLike) -> tuple[str, str]:
    """``(template text, where it came from)``: a name of ``train/templates/<name>.jinja`` or a path."""
    text = os.fspath(name_or_path)
    path = Path(text)
    if not (path.suffix == ".jinja" or os.sep in text or path.is_file()):
        path = TEMPLATES_DIR / f"{text}.jinja"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in TEMPLATES_DIR.glob("*.jinja")))
            raise ChatTemplateError(f"unknown chat template {text!r} (no {path}; known: {known})")
    try:
        template = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ChatTemplateError(f"chat template file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ChatTemplateError(f"{path}: cannot read the chat template ({exc})") from None
    if not template.strip():
        raise ChatTemplateError(f"{path}: the chat template is empty")
    return template, str(path)


def template_of(tokenizer: Any, template: str | None = None) -> str:
    """``template``, else the tokenizer's own chat template, else the default one."""
    if template:
        return template
    own = getattr(tokenizer, "chat_template", None)
    if isinstance(own, dict):  # several named templates: the default one
        own = own.get("default")
    return own or load_chat_template(DEFAULT_CHAT_TEMPLATE)[0]


def render(tokenizer: Any, messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = False,
           template: str | None = None) -> str:
    """The conversation as text through the chat template (``template_of``). A template that fails on it
    (``raise_exception``, an undefined name) is a ChatTemplateError, so a CLI or the web page reports it
    as one line instead of a Jinja traceback; syntax errors pass through for :func:`check_chat_template`
    to name their line."""
    import jinja2

    try:
        return tokenizer.apply_chat_template([dict(m) for m in messages],
                                             chat_template=template_of(tokenizer, template),
                                             tokenize=False, add_generation_prompt=add_generation_prompt)
    except (ChatTemplateError, jinja2.TemplateSyntaxError):
        raise
    except Exception as exc:
        raise ChatTemplateError(f"the chat template cannot render a conversation "
                                f"({type(exc).__name__}: {exc})") from None


def assistant_spans(tokenizer: Any, messages: Sequence[Mapping[str, str]],
                    template: str | None = None) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the ``[start, end)`` characters of each assistant turn (see the
    module docstring); ChatTemplateError when the template does not render turn after turn."""
    template = template_of(tokenizer, template)
    text = render(tokenizer, messages, template=template)
    spans = []
    for k, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:k], add_generation_prompt=True, template=template)
        through = render(tokenizer, messages[:k + 1], template=template)
        if not through.startswith(before) or not text.startswith(through):
            which = "the text before it (with the generation prompt)" if not through.startswith(before) else \
                "the whole conversation"
            raise ChatTemplateError(f"the chat template does not render a conversation turn after turn: rendered up "
                                    f"to message {k}, it is not a prefix of {which}, so the assistant's tokens "
                                    "cannot be told apart (use a template that only appends per turn)")
        spans.append((len(before), len(through)))
    return text, spans


def token_mask(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> list[bool]:
    """True for every token whose characters overlap a span (offsets and spans both in order)."""
    mask = [False] * len(offsets)
    k = 0
    for i, (start, end) in enumerate(offsets):
        while k < len(spans) and start >= spans[k][1]:
            k += 1
        if k == len(spans):
            break
        if end > spans[k][0]:
            mask[i] = True
    return mask


def adds_bos(tokenizer: Any, text: str) -> bool:
    """Whether encoding ``text`` should add the tokenizer's special tokens: not when the text starts with
    the BOS token's text already (a chat template wrote it)."""
    bos = getattr(tokenizer, "bos_token", None)
    return not (bos and text.startswith(bos))


PROBE = [{"role": "system", "content": "S"}, {"role": "user", "content": "U1"},
         {"role": "assistant", "content": "A1"}, {"role": "user", "content": "U2"},
         {"role": "assistant", "content": "A2"}]


def check_chat_template(tokenizer: Any, template: str, where: str) -> None:
    """ChatTemplateError (naming ``where``, and the line of a Jinja syntax error) unless ``template``
    renders conversations with and without a system message turn after turn, each assistant text
    inside its span, and renders a generation prompt."""
    import jinja2

    for messages in (PROBE, PROBE[1:]):
        try:
            text, spans = assistant_spans(tokenizer, messages, template)
            render(tokenizer, messages[:-1], add_generation_prompt=True, template=template)
        except ChatTemplateError as exc:
            raise ChatTemplateError(f"{where}: {exc}") from None
        except jinja2.TemplateSyntaxError as exc:
            raise ChatTemplateError(f"{where}: line {exc.lineno}: the chat template is not valid Jinja "
                                    f"({exc.message})") from None
        except Exception as exc:  # raise_exception(), an undefined name, a type error inside the template
            raise ChatTemplateError(f"{where}: the chat template cannot render a conversation "
                                    f"({type(exc).__name__}: {exc})") from None
        answers = [m["content"] for m in messages if m["role"] == "assistant"]
        for (start, end), answer in zip(spans, answers):
            if answer not in text[start:end]:
                raise ChatTemplateError(f"{where}: the chat template does not write the assistant's text "
                                        f"{answer!r} in its turn (rendered {text[start:end]!r})")


def use_chat_template(tokenizer: Any, name_or_path: PathLike | None = None) -> str:
    """Set (and return) the chat template conversations are rendered with: ``name_or_path`` if given
    (checked with :func:`check_chat_template`), else the tokenizer's own, else the default. The
    tokenizer then stores it wherever it is saved. The tokenizer's own template is not probed here
    (alpaca-only data never renders it); a conversation it cannot mask raises when tokenized."""
    if name_or_path:
        template, where = load_chat_template(name_or_path)
        check_chat_template(tokenizer, template, where)
    else:
        template = template_of(tokenizer)
    tokenizer.chat_template = template
    return template


# --------------------------------------------------------------------------------------------
# Tokenizing


def _encode(tokenizer: Any, texts: list[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
    """(ids, character offsets) of each text, BOS added by :func:`adds_bos`'s rule."""
    out: list[Any] = [None] * len(texts)
    for flag in (True, False):
        which = [i for i, t in enumerate(texts) if adds_bos(tokenizer, t) == flag]
        if not which:
            continue
        enc = tokenizer([texts[i] for i in which], add_special_tokens=flag, return_offsets_mapping=True,
                        padding=False, truncation=False)
        for i, ids, offsets in zip(which, enc["input_ids"], enc["offset_mapping"]):
            out[i] = (list(ids), [tuple(o) for o in offsets])
    return out


def tokenize_conversations(
    tokenizer: Any,
    conversations: Sequence[Sequence[Mapping[str, str]]],
    cutoff_len: int = 512,
    train_on_inputs: bool = False,
    template: str | None = None,
    batch_size: int = 1000,
) -> list[dict[str, list[int]]]:
    """``{"input_ids", "attention_mask", "labels"}`` of each conversation (checked messages), cut at
    ``cutoff_len`` tokens; labels are -100 outside the assistant turns (all trained with
    ``train_on_inputs``)."""
    if cutoff_len <= 1:
        raise ValueError(f"cutoff_len must be > 1, got {cutoff_len}")
    template = template_of(tokenizer, template)
    out = []
    for start in range(0, len(conversations), batch_size):
        rendered = [assistant_spans(tokenizer, conv, template) for conv in conversations[start:start + batch_size]]
        for (ids, offsets), (_, spans) in zip(_encode(tokenizer, [text for text, _ in rendered]), rendered):
            mask = token_mask(offsets, spans)
            ids, mask = ids[:cutoff_len], mask[:cutoff_len]
            labels = list(ids) if train_on_inputs else [t if m else IGNORE_INDEX for t, m in zip(ids, mask)]
            out.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    return out


def fit_history(tokenizer: Any, messages: Sequence[Mapping[str, str]], budget: int,
                template: str | None = None) -> tuple[list[dict[str, str]], int]:
    """``(messages, dropped)``: the oldest user/assistant pairs dropped (a system message kept) until the
    prompt with its generation prompt is at most ``budget`` tokens or only the last user turn is left."""
    messages = [dict(m) for m in messages]
    system = messages[:1] if messages and messages[0]["role"] == "system" else []
    turns = messages[len(system):]
    dropped = 0
    while len(turns) > 1:
        text = render(tokenizer, system + turns, add_generation_prompt=True, template=template)
        if len(tokenizer(text, add_special_tokens=adds_bos(tokenizer, text))["input_ids"]) <= budget:
            break
        turns = turns[2:]
        dropped += 2
    return system + turns, dropped

