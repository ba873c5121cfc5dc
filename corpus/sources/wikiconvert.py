"""``{{convert}}``/``{{cvt}}`` as a reader of the article sees them: the measurement as written and, in
brackets, the same measurement converted — "At 52,419 square miles (135,765 km²), Alabama is".

Module:Convert on Wikipedia does the conversion when the page is rendered, so the figure in brackets
is in no dump: a plain strip (and mwparserfromhell's ``strip_code``) loses it, or loses the whole
measurement. What is done here, closely enough for training text:

- units: length, area, volume, mass, speed, temperature, power, energy, pressure and time, the codes
  articles use most (``km2``/``sqmi``/``acre``, ``C``/``F``, ``kn``, ``e6acre`` = millions of acres,
  ``/km2`` = per square kilometre); the output unit is the one given, or the input unit's usual
  counterpart (metric ↔ US customary) when none is; several output units (``LT ST``) and ``ftin``
  (feet and inches) too;
- rounding: the converted figure is as precise as the input — its decimals, less the integer's
  trailing zeros ("100 m" is precise to the hundred), shifted by the conversion factor's order of
  magnitude — and keeps at least two significant figures; "100 metres (330 ft)", "1 mile (1.6 km)",
  "5,000 feet (1,500 m)". An explicit precision argument or ``sigfig=`` wins. This follows
  Module:Convert's results on the common cases; its special cases (rounding to 5 or 25, per-unit
  defaults, engineering notation) are not reproduced;
- display: the input spelled out and the output as a symbol by default; ``abbr=on|off|in|out|values``,
  ``adj=on``/``sing=on`` ("10-mile (16 km)"), ``sp=us``, ``disp=or|out|output only|number|flip|sqbr|
  comma|slash``, ``order=flip``, ``comma=off``; ranges (``1|to|3|m`` → "1 to 3 metres (3.3 to 9.8 ft)");
  compound input (``5|ft|6|in`` → "5 feet 6 inches (1.68 m)");
- an unknown unit, an output unit of another kind, or a value that is not a plain number: the
  measurement as written, unconverted (never a wrong figure).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Unit:
    code: str             # the first of its codes: the key of _DEFAULT_OUT
    symbol: str
    singular: str
    plural: str
    kind: str
    scale: float          # one of it in the kind's base unit (for temperatures: the size of a degree)
    offset: float = 0.0   # temperatures: base value = (value + offset) * scale


_UNITS: dict[str, Unit] = {}


def _unit(codes: str, symbol: str, singular: str, plural: str | None, kind: str, scale: float,
          offset: float = 0.0) -> None:
    unit = Unit(codes.split()[0], symbol, singular, plural or singular + "s", kind, scale, offset)
    for code in codes.split():
        _UNITS[code] = unit


_MILE, _FOOT, _INCH, _YARD = 1609.344, 0.3048, 0.0254, 0.9144
_LB = 0.45359237
for _spec in (
    # length (metre)
    ("m", "m", "metre", None, "length", 1.0), ("km", "km", "kilometre", None, "length", 1e3),
    ("cm", "cm", "centimetre", None, "length", 1e-2), ("mm", "mm", "millimetre", None, "length", 1e-3),
    ("um μm", "μm", "micrometre", None, "length", 1e-6), ("nm", "nm", "nanometre", None, "length", 1e-9),
    ("Mm", "Mm", "megametre", None, "length", 1e6), ("mi", "mi", "mile", None, "length", _MILE),
    ("ft foot feet", "ft", "foot", "feet", "length", _FOOT), ("in", "in", "inch", "inches", "length", _INCH),
    ("yd", "yd", "yard", None, "length", _YARD), ("nmi", "nmi", "nautical mile", None, "length", 1852.0),
    ("ly", "ly", "light-year", None, "length", 9.4607304725808e15),
    ("au AU", "AU", "astronomical unit", None, "length", 1.495978707e11),
    ("pc", "pc", "parsec", None, "length", 3.0856775814913673e16),
    # area (square metre)
    ("m2", "m²", "square metre", None, "area", 1.0), ("km2", "km²", "square kilometre", None, "area", 1e6),
    ("cm2", "cm²", "square centimetre", None, "area", 1e-4), ("mm2", "mm²", "square millimetre", None, "area", 1e-6),
    ("ha", "ha", "hectare", None, "area", 1e4), ("acre acres", "acre", "acre", None, "area", 4046.8564224),
    ("sqmi mi2", "sq mi", "square mile", None, "area", _MILE ** 2),
    ("sqft ft2", "sq ft", "square foot", "square feet", "area", _FOOT ** 2),
    ("sqyd yd2", "sq yd", "square yard", None, "area", _YARD ** 2),
    ("sqin in2", "sq in", "square inch", "square inches", "area", _INCH ** 2),
    # volume (cubic metre)
    ("m3", "m³", "cubic metre", None, "volume", 1.0), ("km3", "km³", "cubic kilometre", None, "volume", 1e9),
    ("cm3 cc", "cm³", "cubic centimetre", None, "volume", 1e-6), ("L l", "L", "litre", None, "volume", 1e-3),
    ("ml mL", "ml", "millilitre", None, "volume", 1e-6),
    ("usgal gal USgal", "US gal", "US gallon", None, "volume", 3.785411784e-3),
    ("impgal", "imp gal", "imperial gallon", None, "volume", 4.54609e-3),
    ("cuft ft3", "cu ft", "cubic foot", "cubic feet", "volume", _FOOT ** 3),
    ("cuin in3", "cu in", "cubic inch", "cubic inches", "volume", _INCH ** 3),
    ("cumi mi3", "cu mi", "cubic mile", None, "volume", _MILE ** 3),
    ("bbl", "bbl", "barrel", None, "volume", 0.158987294928),
    ("acre.ft acre-ft", "acre⋅ft", "acre-foot", "acre-feet", "volume", 4046.8564224 * _FOOT),
    # mass (kilogram)
    ("kg", "kg", "kilogram", None, "mass", 1.0), ("g", "g", "gram", None, "mass", 1e-3),
    ("mg", "mg", "milligram", None, "mass", 1e-6), ("t tonne", "t", "tonne", None, "mass", 1e3),
    ("lb", "lb", "pound", None, "mass", _LB), ("oz", "oz", "ounce", None, "mass", _LB / 16),
    ("st", "st", "stone", "stone", "mass", 14 * _LB),
    ("ST shortton", "short ton", "short ton", None, "mass", 2000 * _LB),
    ("LT longton", "long ton", "long ton", None, "mass", 2240 * _LB),
    # speed (metre per second)
    ("km/h kph", "km/h", "kilometre per hour", "kilometres per hour", "speed", 1 / 3.6),
    ("mph", "mph", "mile per hour", "miles per hour", "speed", _MILE / 3600),
    ("m/s", "m/s", "metre per second", "metres per second", "speed", 1.0),
    ("ft/s", "ft/s", "foot per second", "feet per second", "speed", _FOOT),
    ("kn knot knots", "kn", "knot", None, "speed", 1852 / 3600),
    # temperature (kelvin)
    ("C °C", "°C", "degree Celsius", "degrees Celsius", "temperature", 1.0, 273.15),
    ("F °F", "°F", "degree Fahrenheit", "degrees Fahrenheit", "temperature", 5 / 9, 459.67),
    ("K", "K", "kelvin", None, "temperature", 1.0),
    # power (watt), energy (joule), pressure (pascal)
    ("W", "W", "watt", None, "power", 1.0), ("kW", "kW", "kilowatt", None, "power", 1e3),
    ("MW", "MW", "megawatt", None, "power", 1e6), ("GW", "GW", "gigawatt", None, "power", 1e9),
    ("hp", "hp", "horsepower", "horsepower", "power", 745.69987158227022),
    ("kWh kW.h", "kWh", "kilowatt-hour", None, "energy", 3.6e6), ("J", "J", "joule", None, "energy", 1.0),
    ("kJ", "kJ", "kilojoule", None, "energy", 1e3), ("MJ", "MJ", "megajoule", None, "energy", 1e6),
    ("cal", "cal", "calorie", None, "energy", 4.184), ("kcal", "kcal", "kilocalorie", None, "energy", 4184.0),
    ("Pa", "Pa", "pascal", None, "pressure", 1.0), ("kPa", "kPa", "kilopascal", None, "pressure", 1e3),
    ("MPa", "MPa", "megapascal", None, "pressure", 1e6),
    ("psi", "psi", "pound per square inch", "pounds per square inch", "pressure", 6894.757293168361),
    ("bar", "bar", "bar", "bar", "pressure", 1e5), ("atm", "atm", "standard atmosphere", None, "pressure", 101325.0),
    ("mmHg", "mmHg", "millimetre of mercury", "millimetres of mercury", "pressure", 133.322387415),
    ("inHg", "inHg", "inch of mercury", "inches of mercury", "pressure", 3386.388640341),
    # time (second): no usual counterpart, converted only to a unit that is given
    ("s", "s", "second", None, "time", 1.0), ("min", "min", "minute", None, "time", 60.0),
    ("h", "h", "hour", None, "time", 3600.0),
):
    _unit(*_spec)

# the output unit when an article gives none: the input unit's usual metric or US customary counterpart
# (keyed by each unit's first code; its other codes share it)
_DEFAULT_OUT = {
    "m": "ft", "km": "mi", "cm": "in", "mm": "in", "Mm": "mi", "mi": "km", "ft": "m", "in": "mm", "yd": "m",
    "nmi": "km",
    "m2": "sqft", "km2": "sqmi", "cm2": "sqin", "mm2": "sqin", "ha": "acre", "acre": "ha", "sqmi": "km2",
    "sqft": "m2", "sqyd": "m2", "sqin": "cm2",
    "m3": "cuft", "km3": "cumi", "cm3": "cuin", "L": "usgal", "usgal": "L", "impgal": "L", "cuft": "m3",
    "cuin": "cm3", "cumi": "km3", "bbl": "m3", "acre.ft": "m3",
    "kg": "lb", "g": "oz", "t": "LT ST", "lb": "kg", "oz": "g", "st": "kg", "ST": "t", "LT": "t",
    "km/h": "mph", "mph": "km/h", "m/s": "ft/s", "ft/s": "m/s", "kn": "km/h",
    "C": "F", "F": "C", "K": "C",
    "kW": "hp", "MW": "hp", "hp": "kW", "kWh": "MJ", "MJ": "kWh", "kJ": "kcal", "kcal": "kJ", "cal": "J",
    "kPa": "psi", "MPa": "psi", "psi": "kPa", "bar": "psi", "atm": "kPa", "mmHg": "kPa", "inHg": "kPa",
}

RANGE_WORDS = {"-": "–", "–": "–", "to": " to ", "to(-)": " to ", "and": " and ", "and(-)": " and ",
               "or": " or ", "by": " by ", "x": " × ", "×": " × ", "+/-": " ± ", "±": " ± ", ",": ", ",
               ", and": ", and ", ", or": ", or ", "-to-": " to "}
_NUMBER = re.compile(r"[-−+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:e[-+]?\d+)?(?:\+\d+/\d+)?$")
_SCALE = {"e3": ("thousand", 3), "e6": ("million", 6), "e9": ("billion", 9), "e12": ("trillion", 12)}
_ON = ("on", "yes", "y", "true", "1")


def is_number(text: str) -> bool:
    return bool(_NUMBER.match(text.strip()))


# --------------------------------------------------------------------------- numbers


@dataclass(frozen=True)
class Number:
    text: str        # as the article shows it ("52,419", "1 1/2")
    value: float
    precision: int   # decimal places it is precise to; negative for tens, hundreds (trailing zeros)


def parse_number(text: str, comma: bool = True) -> Number | None:
    """A convert value ("1,300", "−4.5", "1+1/2", "2.5e6") with the precision it was written to."""
    raw = text.strip().replace("−", "-").replace(",", "")
    shown = text.strip().replace("+", " ", 1) if "/" in text else text.strip()
    shown = group(shown) if comma else shown.replace(",", "")
    m = re.fullmatch(r"([-+]?)(\d*)\+?(\d+)/(\d+)", raw)
    if m:   # a mixed fraction: "1+1/2"
        if int(m.group(4)) == 0:
            return None
        whole = int(m.group(2) or 0)
        value = whole + int(m.group(3)) / int(m.group(4))
        return Number(shown, -value if m.group(1) == "-" else value, 1)
    m = re.fullmatch(r"([-+]?)(\d*)(?:\.(\d+))?(?:e([-+]?\d+))?", raw)
    if not m or not (m.group(2) or m.group(3)):
        return None
    integer, fraction, exp = m.group(2) or "0", m.group(3) or "", int(m.group(4) or 0)
    if fraction:
        precision = len(fraction)
    else:
        digits = integer.lstrip("0")
        precision = -(len(digits) - len(digits.rstrip("0"))) if digits else 0
    value = float(raw)
    return Number(shown, value, precision - exp) if math.isfinite(value) else None


def group(number: str) -> str:
    """Thousands separators in a plain number of four or more digits, as convert shows its values."""
    m = re.fullmatch(r"([-−]?)(\d+)(\.\d+)?", number)
    if not m or len(m.group(2)) < 4:
        return number
    return f"{m.group(1)}{int(m.group(2)):,}{m.group(3) or ''}"


_PRECISION = range(-30, 16)   # what can be shown of a float at all


def _round(value: float, precision: int) -> float:
    """Half away from zero, as a reader expects (Python's round() goes to even)."""
    q = 10.0 ** precision
    scaled = abs(value) * q
    if not math.isfinite(scaled) or scaled > 1e300:
        return value
    return math.copysign(math.floor(scaled + 0.5 + 1e-9), value) / q


def format_number(value: float, precision: int, comma: bool = True) -> str:
    rounded = _round(value, precision)
    text = f"{abs(rounded):{',' if comma else ''}.{max(precision, 0)}f}"
    return ("−" if rounded < 0 else "") + text


def out_precision(number: Number, out_value: float, ratio: float, extra: int = 0) -> int:
    """Decimal places of a converted figure: the input's precision shifted by the order of magnitude of
    the conversion ratio (truncated, so 3.28 ft per metre shifts nothing), and at least two
    significant figures (``extra`` more, for compound input)."""
    shift = math.trunc(math.log10(ratio)) if ratio > 0 else 0
    precision = number.precision - shift
    if out_value:
        precision = max(precision, 1 + extra - math.floor(math.log10(abs(out_value)) + 1e-12))
    return precision


def sigfig_precision(value: float, sigfig: int) -> int:
    return sigfig - 1 - math.floor(math.log10(abs(value))) if value else 0


# --------------------------------------------------------------------------- units


@dataclass(frozen=True)
class UnitRef:
    """A unit code as written: ``e6acre`` (millions of acres), ``/km2`` (per square kilometre)."""
    code: str
    unit: Unit | None
    per: bool = False
    scale_word: str = ""
    exponent: int = 0


def unit_ref(code: str) -> UnitRef:
    code = code.strip()
    m = re.match(r"(e(?:3|6|9|12))(?=\D)", code)
    if m:
        word, exponent = _SCALE[m.group(1)]
        inner = unit_ref(code[m.end():])
        return UnitRef(code, inner.unit, inner.per, word, exponent)
    if code.startswith("/"):
        return UnitRef(code, _UNITS.get(code[1:]), per=True)
    return UnitRef(code, _UNITS.get(code))


def to_base(ref: UnitRef, value: float) -> float:
    assert ref.unit is not None
    value *= 10.0 ** ref.exponent
    if ref.per:
        return value / ref.unit.scale
    return (value + ref.unit.offset) * ref.unit.scale


def from_base(ref: UnitRef, base: float) -> float:
    assert ref.unit is not None
    if ref.per:
        value = base * ref.unit.scale
    else:
        value = base / ref.unit.scale - ref.unit.offset
        if ref.unit.offset and abs(value) < 1e-9 * ref.unit.offset:
            value = 0.0   # 32 °F is 0 °C, not 5.7e-14 °C
    return value / 10.0 ** ref.exponent


def ratio(src: UnitRef, dst: UnitRef) -> float:
    """How many of ``dst`` one ``src`` is, for the sizes of the units (offsets aside)."""
    assert src.unit is not None and dst.unit is not None
    r = (src.unit.scale * 10.0 ** src.exponent) / (dst.unit.scale * 10.0 ** dst.exponent)
    return 1 / r if src.per else r


def _spelling(name: str, us: bool) -> str:
    return name.replace("metre", "meter").replace("litre", "liter") if us else name


def unit_text(ref: UnitRef, value: str, symbol: bool, adj: bool, us: bool) -> tuple[str, str]:
    """(separator, unit text) for ``value`` in ``ref``: a symbol, else the singular or plural name."""
    if ref.scale_word:
        _, text = unit_text(UnitRef(ref.code, ref.unit, ref.per), "2", symbol, False, us)
        return " ", f"{ref.scale_word} {text}"
    if ref.unit is None:
        return " ", ref.code
    u = ref.unit
    one = adj or value.strip() in ("1", "1.0", "one")
    if symbol and u.symbol != u.singular:
        return ("", "/" + u.symbol) if ref.per else (" ", u.symbol)
    if symbol and not ref.per:   # a unit shown by its name even when abbreviated: "9.8 long tons", "12 acres"
        return " ", u.singular if one else u.plural
    if ref.per:
        return " ", "per " + _spelling(u.singular, us)
    name = _spelling(u.singular if one else u.plural, us)
    return ("-" if adj else " "), (name.replace(" ", "-") if adj else name)


# --------------------------------------------------------------------------- the template


def render(pos: list[str], named: dict[str, str], lang: str | None, abbr_default: str = "") -> str:
    """The text of ``{{convert|pos…|named…}}`` (``named`` keys lower-cased, as the template parser gives)."""
    def flag(*names: str) -> str:
        return next((named[n].strip().lower() for n in names if n in named), "")

    p = [x.strip() for x in pos]
    if not p or not is_number(p[0]):
        return " ".join(x for x in p[:2] if x)
    abbr = flag("abbr") or abbr_default
    zh = lang == "zh"
    in_symbol = abbr in ("on", "yes", "in", "values") or zh
    out_symbol = abbr not in ("off", "in") or zh
    adj = (flag("adj") in _ON or flag("sing") in _ON) and not in_symbol
    us = flag("sp") == "us"
    comma = flag("comma") != "off"
    disp = flag("disp") or ("flip" if flag("order") == "flip" else "")
    if disp == "flip" and not abbr and not zh:   # the converted figure first, spelled out; the written one a symbol
        in_symbol, out_symbol, adj = True, False, False

    values, words = [p[0]], []
    i = 1
    while i + 1 < len(p) and p[i] in RANGE_WORDS and is_number(p[i + 1]):
        words.append(RANGE_WORDS[p[i]])
        values.append(p[i + 1])
        i += 2
    code = p[i] if i < len(p) else ""
    numbers = [parse_number(v, comma) for v in values]
    shown = [n.text if n else v for n, v in zip(numbers, values)]

    def joined(texts: list[str]) -> str:
        return texts[0] + "".join(w + t for w, t in zip(words, texts[1:]))

    if not code:
        return joined(shown)
    src = unit_ref(code)
    rest = p[i + 1:]

    # compound input: {{convert|5|ft|6|in}}
    compound: list[tuple[str, UnitRef]] = []
    if len(values) == 1 and len(rest) >= 2 and is_number(rest[0]) and rest[1] in _UNITS:
        compound = [(rest[0], unit_ref(rest[1]))]
        rest = rest[2:]
    if compound:
        sep1, u1 = unit_text(src, values[0], in_symbol, False, us)
        sep2, u2 = unit_text(compound[0][1], compound[0][0], in_symbol, False, us)
        in_text = f"{shown[0]}{sep1}{u1} {compound[0][0]}{sep2}{u2}"
    elif abbr == "values":
        in_text = joined(shown)
    else:
        last = values[-1] if len(values) == 1 else "2"   # a range takes the plural
        sep, text = unit_text(src, last, in_symbol, adj, us)
        in_text = joined(shown) + sep + text

    out = _converted(src, numbers, compound, rest, flag, out_symbol and abbr != "values", us, comma,
                     values_only=abbr == "values", joined=joined)
    if out is None or disp in ("x", "table", "tablecen", "u", "unit", "unit or text", "unit2"):
        return in_text
    if disp in ("out", "output only", "number", "output number only"):
        return out
    if disp == "or":
        return f"{in_text} or {out}"
    if disp == "flip":
        return f"{out} ({in_text})"
    if disp == "sqbr":
        return f"{in_text} [{out}]"
    if disp == "comma":
        return f"{in_text}, {out}"
    if disp == "slash":
        return f"{in_text}/{out}"
    return f"{in_text}（{out}）" if zh else f"{in_text} ({out})"


def _converted(src: UnitRef, numbers: list[Number | None], compound: list[tuple[str, UnitRef]],
               rest: list[str], flag: Callable[..., str], symbol: bool, us: bool, comma: bool,
               values_only: bool, joined: Callable[[list[str]], str]) -> str | None:
    """The bracketed part: each value in each output unit, or None where nothing can be converted."""
    if src.unit is None or any(n is None for n in numbers):
        return None
    out_codes, precision = "", None
    if rest and rest[0] and not is_number(rest[0]):
        out_codes, rest = rest[0], rest[1:]
    elif rest and not rest[0]:
        rest = rest[1:]
    if rest and re.fullmatch(r"-?\d{1,3}", rest[0]):
        precision = int(rest[0])
    sigfig = flag("sigfig")
    if not out_codes:
        default = _DEFAULT_OUT.get(src.unit.code)
        if default is None:
            return None
        out_codes = " ".join(("/" + c) if src.per else c for c in default.split())
    values = [n.value for n in numbers if n is not None]
    if compound:
        second = parse_number(compound[0][0])
        if second is None or compound[0][1].unit is None or compound[0][1].unit.kind != src.unit.kind:
            return None
        base = [to_base(src, values[0]) + to_base(compound[0][1], second.value)]
        smallest = compound[0][1]
        numbers = [second]
    else:
        base = [to_base(src, v) for v in values]
        smallest = src

    parts = []
    for code in out_codes.split():
        if code == "ftin":
            if src.unit.kind != "length" or src.per or len(base) != 1:
                return None
            parts.append(_feet_inches(base[0], symbol))
            continue
        dst = unit_ref(code)
        if dst.unit is None or dst.unit.kind != src.unit.kind or dst.per != src.per:
            return None
        outs = [from_base(dst, b) for b in base]
        if not all(math.isfinite(o) for o in outs):
            return None
        if re.fullmatch(r"[1-9]\d?", sigfig):
            prec = min(sigfig_precision(o, int(sigfig)) for o in outs)
        elif precision is not None:
            prec = precision
        else:
            r = ratio(smallest, dst)
            smallest_out = min((abs(o) for o in outs if o), default=0.0)
            prec = max(out_precision(n, smallest_out, r, extra=1 if compound else 0)
                       for n in numbers if n is not None)
        prec = min(max(prec, _PRECISION.start), _PRECISION.stop - 1)
        texts = [format_number(o, prec, comma) for o in outs]
        if values_only:
            parts.append(joined(texts))
            continue
        plural = "2" if len(texts) > 1 else texts[0]
        sep, text = unit_text(dst, plural, symbol, False, us)
        parts.append(joined(texts) + sep + text)
    return "; ".join(parts)


def _feet_inches(metres: float, symbol: bool) -> str:
    inches_total = _round(metres / _INCH, 0)
    feet, inches = divmod(int(abs(inches_total)), 12)
    sign = "−" if inches_total < 0 else ""
    if symbol:
        return f"{sign}{feet:,} ft {inches} in"
    foot = "foot" if feet == 1 else "feet"
    inch = "inch" if inches == 1 else "inches"
    return f"{sign}{feet:,} {foot} {inches} {inch}"
