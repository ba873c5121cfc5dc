"""``python -m train.ie_eval --cases GOLD --outputs OUT``: score IE answers already generated (no model).

The scoring itself is :mod:`train.ie.scoring` (pure) over :mod:`train.ie.answers`; this name stays for
the command and for code that imported the scorer from here.
"""

from train.cli import ie_eval_main as main
from train.ie.answers import NONE_WORDS, Parsed, norm, parse_answer
from train.ie.cases import IECase, IECaseError, instruction, read_ie_cases, read_outputs
from train.ie.schema import schema_from_dict
from train.ie.scoring import ROWS, Counts, Report, aggregate, format_table, score_case, score_outputs

__all__ = ["Counts", "IECase", "IECaseError", "NONE_WORDS", "Parsed", "ROWS", "Report", "aggregate", "format_table",
           "instruction", "main", "norm", "parse_answer", "read_ie_cases", "read_outputs", "schema_from_dict",
           "score_case", "score_outputs"]

if __name__ == "__main__":
    raise SystemExit(main())
