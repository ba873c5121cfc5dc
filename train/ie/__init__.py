"""Information extraction: instruction data for NER, relations and events, and scoring model answers.

- :mod:`~train.ie.schema` — the types a task extracts (:class:`Schema`, schema files);
- :mod:`~train.ie.templates` — each language's instruction phrasings;
- :mod:`~train.ie.format` — the trained answer format: ``render_*`` and the strict ``parse_*``;
- :mod:`~train.ie.readers` — BIO, relation and event files as samples;
- :mod:`~train.ie.build` — samples → ``{instruction, input, output}`` records (:func:`build`);
- :mod:`~train.ie.answers` — reading a real model's answer through its noise (pure);
- :mod:`~train.ie.scoring` — precision / recall / F1 (pure);
- :mod:`~train.ie.cases` — IE case files with gold answers, and model outputs.

Commands (:mod:`train.cli`)::

    python -m train.ie --task ner|re|ee --input FILE --lang zh|en --out FILE.jsonl [--schema FILE] [--seed N]
    python -m train.ie_eval --cases GOLD --outputs OUT          # score answers already generated
    python -m train.generate --base DIR --lora DIR --run-ie-cases GOLD   # generate, then score
"""

from train.ie.answers import NONE_WORDS, Parsed, norm, parse_answer
from train.ie.build import build, schema_from_samples
from train.ie.cases import IECase, IECaseError, instruction, read_ie_cases, read_outputs
from train.ie.format import (NONE_MARKERS, Event, OutputFormatError, parse_ee, parse_ner, parse_re, render_ee,
                             render_ner, render_re)
from train.ie.readers import Sample, join_tokens, read_bio, read_events, read_relations
from train.ie.schema import LANGS, TASKS, IEError, Schema, load_schema, schema_from_dict
from train.ie.scoring import ROWS, Counts, Report, aggregate, format_table, score_case, score_outputs
from train.ie.templates import TEMPLATES_DIR, IETemplates, load_ie_templates

__all__ = [
    "Counts", "Event", "IECase", "IECaseError", "IEError", "IETemplates", "LANGS", "NONE_MARKERS", "NONE_WORDS",
    "OutputFormatError", "Parsed", "ROWS", "Report", "Sample", "Schema", "TASKS", "TEMPLATES_DIR", "aggregate",
    "build", "format_table", "instruction", "join_tokens", "load_ie_templates", "load_schema", "norm",
    "parse_answer", "parse_ee", "parse_ner", "parse_re", "read_bio", "read_events", "read_ie_cases", "read_outputs",
    "read_relations", "render_ee", "render_ner", "render_re", "schema_from_dict", "schema_from_samples",
    "score_case", "score_outputs",
]
