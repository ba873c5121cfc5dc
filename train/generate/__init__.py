"""Generation from a checkpoint, as a library: pretrained continuation, instructions (alpaca template),
case files. The command line is :mod:`train.cli` (``python -m train.generate``).

CaMA was used three ways, and so is this package:

- continuation: the text is the prompt (the pretrained model, ``{"prompt"}`` cases);
- instruction: the alpaca template around an instruction and an optional input (the LoRA-tuned
  model, ``{"instruction", "input"?}`` cases);
- information extraction: instructions built from a schema (``--run-ie-cases``; :mod:`train.ie`);

and a multi-turn chat: the conversation so far formatted with the chat template saved with the
tokenizer (:mod:`train.chat`; ``--chat``, the web page's chat mode, :meth:`Generator.chat_prompt`).

Decoding defaults are CaMA's (``num_beams`` 2, ``temperature`` 0.2, ``top_p`` 0.75, ``top_k`` 40,
``repetition_penalty`` 1.3, ``max_new_tokens`` 512). CaMA passed temperature/top-p/top-k without
``do_sample``, so transformers ran a plain beam search and ignored them; here they take effect only
with ``do_sample`` (``--sample``), and are validated either way.

- :mod:`~train.generate.decoding` — :class:`Decoding`, :class:`GenerateError` (no torch);
- :mod:`~train.generate.loading` — :func:`load_model`, :func:`check_adapter` (an adapter for another
  base is refused before peft touches it);
- :mod:`~train.generate.generator` — :class:`Generator` (batches, streaming, stop), :class:`Output`;
- :mod:`~train.generate.cases` — :func:`read_cases`, :func:`run_cases`;
- :mod:`~train.generate.interactive` — :func:`interactive`.
"""

from train.generate.cases import Case, read_cases, run_cases
from train.generate.decoding import FINISH, MODES, Decoding, GenerateError
from train.generate.generator import Generator, Output
from train.generate.interactive import interactive
from train.generate.loading import (ADAPTER_CONFIG, ADAPTER_WEIGHTS, adapter_tensor_shapes, check_adapter, load_model,
                                    pick_device, pick_dtype)

__all__ = ["ADAPTER_CONFIG", "ADAPTER_WEIGHTS", "Case", "Decoding", "FINISH", "GenerateError", "Generator", "MODES",
           "Output", "adapter_tensor_shapes", "check_adapter", "interactive", "load_model", "pick_device", "pick_dtype",
           "read_cases", "run_cases"]
