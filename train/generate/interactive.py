"""Prompts from a terminal (or any text stream), answers streamed back; in chat mode a conversation
whose history goes with every message."""

from __future__ import annotations

import sys
from typing import Any

from train.generate.decoding import Decoding
from train.generate.generator import Generator, Output

RESET = "/reset"


def interactive(generator: Generator, decoding: Decoding, mode: str, stream: bool = True,
                stdin: Any = None, stdout: Any = None, stderr: Any = None, system: str | None = None) -> int:
    """Read prompts (continuation), instruction + optional input (instruction mode) or the user's
    messages (``chat``) until EOF or an empty line; print each answer as it is generated and return
    how many were given. A prompt or message is one line: ``\\n`` in it stands for a newline.

    In chat mode the conversation so far — ``system`` first, if given, then every message and
    answer — is formatted with the chat template for each new message; the oldest turns are left out
    (said on ``stderr``) when the prompt and ``max_new_tokens`` would not fit the model, and a line
    ``/reset`` starts a new conversation."""
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    tty = hasattr(stdin, "isatty") and stdin.isatty()
    if stream and decoding.num_beams > 1:
        print(f"note: beam search (num_beams={decoding.num_beams}) cannot stream: each answer appears when it is "
              "complete; pass --num-beams 1 to see tokens as they are generated", file=stderr)

    def ask(label: str) -> str | None:
        if tty:
            stdout.write(label)
            stdout.flush()
        line = stdin.readline()
        return None if not line else line.rstrip("\n")

    history: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    start = list(history)
    count = 0
    while True:
        if mode == "chat":
            text = ask("you> ")
            if not text:
                break
            if text.strip() == RESET:
                history = list(start)
                print("[a new conversation]", file=stderr)
                continue
            history.append({"role": "user", "content": text.replace("\\n", "\n")})
            prompt, dropped = generator.chat_prompt(history, decoding.max_new_tokens)
            if dropped:
                print(f"[history: the oldest {dropped} messages left out to fit the model's context]", file=stderr)
        elif mode == "instruction":
            instruction = ask("instruction> ")
            if not instruction:
                break
            inp = ask("input (Enter for none)> ")
            prompt = generator.prompt(instruction, inp or None)
        else:
            text = ask("prompt> ")
            if not text:
                break
            prompt = generator.prompt(prompt=text.replace("\\n", "\n"))
        result = None
        if stream:
            for piece in generator.stream(prompt, decoding):
                if isinstance(piece, Output):
                    result = piece
                else:
                    stdout.write(piece)
                    stdout.flush()
        else:
            result = generator.generate([prompt], decoding)[0]
            stdout.write(result.text)
        stdout.write("\n")
        stdout.flush()
        assert result is not None
        if mode == "chat":
            history.append({"role": "assistant", "content": result.text})
        print(f"[finish: {result.finish}, {result.new_tokens} new tokens]", file=stderr)
        count += 1
    return count
