"""Prompts from a terminal (or any text stream), answers streamed back."""

from __future__ import annotations

import sys
from typing import Any

from train.generate.decoding import Decoding
from train.generate.generator import Generator, Output


def interactive(generator: Generator, decoding: Decoding, mode: str, stream: bool = True,
                stdin: Any = None, stdout: Any = None, stderr: Any = None) -> int:
    """Read prompts (continuation) or instruction + optional input (instruction mode) until EOF or
    an empty prompt; print the answer as it is generated. A continuation prompt is one line: ``\\n``
    in it stands for a newline (few-shot prompts)."""
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

    count = 0
    while True:
        if mode == "instruction":
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
        print(f"[finish: {result.finish}, {result.new_tokens} new tokens]", file=stderr)
        count += 1
    return count
