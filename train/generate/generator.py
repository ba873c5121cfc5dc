"""A loaded model with its tokenizer and templates: prompts in, :class:`Output` out, in batches or
streamed, and cancellable (the web page's Stop). A conversation becomes a prompt through the chat
template (:meth:`Generator.chat_prompt`, :mod:`train.chat`).

Every output reports how it ended: ``finish`` is ``"eos"`` when the model wrote EOS, ``"length"``
when it was cut at ``max_new_tokens``, ``"stopped"`` when a caller cancelled it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from train.generate.decoding import Decoding, GenerateError


@dataclass
class Output:
    text: str
    finish: str          # eos | length | stopped
    new_tokens: int


class Generator:
    """A loaded model with its tokenizer and prompt template: prompts in, :class:`Output`s out.
    ``chat_template`` (a template's text): the one conversations are formatted with; default the
    tokenizer's own (saved with the checkpoint), else :data:`train.chat.DEFAULT_CHAT_TEMPLATE`."""

    def __init__(self, model: Any, tokenizer: Any, template: Any = None, default_mode: str = "continuation",
                 chat_template: str | None = None) -> None:
        from train.chat import template_of
        from train.prompts import load_template

        self.model = model
        self.tokenizer = tokenizer
        self.template = template or load_template("alpaca")
        self.chat_template = template_of(tokenizer, chat_template)
        if default_mode not in ("instruction", "continuation"):
            raise GenerateError(f"mode must be instruction or continuation, got {default_mode!r}")
        self.default_mode = default_mode
        self.lock = threading.Lock()

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def prompt(self, instruction: str | None = None, input: str | None = None, prompt: str | None = None) -> str:
        """The model input: ``prompt`` as is (continuation) or the template around an instruction."""
        if prompt is not None:
            return prompt
        if instruction is None:
            raise GenerateError("either a prompt or an instruction is needed")
        return self.template.prompt(instruction, input or None)

    def chat_prompt(self, messages: Sequence[Any], max_new_tokens: int | None = None) -> tuple[str, int]:
        """``(prompt, dropped)``: the conversation, which ends with the user's message, through the chat
        template with the generation prompt. With ``max_new_tokens``, the oldest user/assistant pairs
        are left out (``dropped`` messages; a system message stays) until the prompt and the answer fit
        the model's positions."""
        from train.chat import fit_history, render

        dropped = 0
        limit = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
        if limit and max_new_tokens is not None:
            budget = max(limit - max_new_tokens, 1)
            messages, dropped = fit_history(self.tokenizer, messages, budget, self.chat_template)
        return render(self.tokenizer, messages, add_generation_prompt=True, template=self.chat_template), dropped

    def _encode(self, prompts: Sequence[str]) -> Any:
        """Left-padded tensors; BOS added unless a prompt starts with it (a chat template writes it)."""
        from train.chat import adds_bos

        tok = self.tokenizer
        flags = {adds_bos(tok, p) for p in prompts}
        if len(flags) == 1:
            enc = tok(list(prompts), return_tensors="pt", padding=True, add_special_tokens=flags.pop())
        else:
            enc = tok.pad([tok(p, add_special_tokens=adds_bos(tok, p)) for p in prompts], return_tensors="pt")
        return enc.to(self.device)

    def _generate_kwargs(self, decoding: Decoding) -> dict[str, Any]:
        tok = self.tokenizer
        return {**decoding.generation_kwargs(), "pad_token_id": tok.pad_token_id, "eos_token_id": tok.eos_token_id,
                "bos_token_id": tok.bos_token_id}

    def _finish(self, new_ids: Sequence[int], decoding: Decoding, stopped: bool = False) -> Output:
        eos = self.tokenizer.eos_token_id
        ids = list(new_ids)
        if eos in ids:
            ids, finish = ids[:ids.index(eos)], "eos"
        else:
            # Rows that finished early are padded to the longest; a cut row has max_new_tokens.
            finish = "stopped" if stopped and len(ids) < decoding.max_new_tokens else "length"
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        return Output(text, finish, len(ids))

    def generate(self, prompts: Sequence[str], decoding: Decoding | None = None,
                 stop: threading.Event | None = None) -> list[Output]:
        """One batch (left-padded); outputs in the order of ``prompts``."""
        decoding = decoding or Decoding()
        enc = self._encode(prompts)
        kwargs = self._generate_kwargs(decoding)
        if stop is not None:
            kwargs["stopping_criteria"] = _stopping(stop)
        with self.lock:
            out = self.model.generate(**enc, **kwargs)
        width = enc["input_ids"].shape[1]
        stopped = stop is not None and stop.is_set()
        return [self._finish(row[width:].tolist(), decoding, stopped) for row in out]

    def stream(self, prompt: str, decoding: Decoding | None = None,
               stop: threading.Event | None = None) -> Iterator[str | Output]:
        """Text pieces as they are generated, then the :class:`Output`. Beam search cannot stream
        (the best beam is known only at the end): with ``num_beams`` > 1 the whole answer comes as
        one piece when it is complete."""
        decoding = decoding or Decoding()
        if decoding.num_beams > 1:
            result = self.generate([prompt], decoding, stop)[0]
            if result.text:
                yield result.text
            yield result
            return
        from transformers import TextIteratorStreamer

        enc = self._encode([prompt])
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        stop = stop if stop is not None else threading.Event()
        kwargs = {**enc, **self._generate_kwargs(decoding), "streamer": streamer, "stopping_criteria": _stopping(stop)}
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                with self.lock:
                    box["out"] = self.model.generate(**kwargs)
            except BaseException as exc:  # re-raised in the caller's thread
                box["error"] = exc
                streamer.end()

        thread = threading.Thread(target=work, name="generate", daemon=True)
        thread.start()
        try:
            for piece in streamer:
                if piece:
                    yield piece
        except GeneratorExit:
            stop.set()  # the caller stopped reading: do not generate for nobody
            raise
        thread.join()
        if "error" in box:
            raise box["error"]
        width = enc["input_ids"].shape[1]
        yield self._finish(box["out"][0][width:].tolist(), decoding, stop.is_set())


def _stopping(stop: threading.Event) -> Any:
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Cancel(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            import torch

            return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([Cancel()])
