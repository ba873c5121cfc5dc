"""The templates whose output is part of a sentence, rendered as text; every other template is dropped.

Dropping every template (what a plain strip does) leaves holes in prose: "At {{convert|52419|sqmi}},
Alabama has" becomes "At , Alabama has", "'''Albedo''' ({{IPAc-en|…}})" becomes "Albedo ()". A template
that *is* prose — a measurement, a date, a foreign word, a non-breaking span — is rendered here the way
a reader of the article sees it, closely enough for training text:

- ``convert``/``cvt``: the measurement and, in brackets, the converted one (:mod:`corpus.sources.wikiconvert`:
  ``{{convert|105|km2}}`` → "105 square kilometres (41 sq mi)");
- dates: ``start date``/``end date``/``birth date``/``death date``/… (``df=y`` for day-month-year),
  ``death date and age`` with the age at death, ``date``, ``dts``, ``as of``, ``circa``; a zh page
  gets "2001年3月5日"; the *current* age of ``birth date and age`` is left out so that the output does
  not depend on the day it is built;
- words: ``lang``/``lang-xx``/``langx``, ``transl``, ``nihongo`` ("English (日本語, rōmaji)"), ``IPA``,
  ``abbr``, ``nowrap``, ``small``, ``sub``/``sup``, ``chem``, ``frac``, ``flag``, interlanguage links
  (``ill``, zh ``link-en``/``le``/``tsl``), ``sort``/``sortname``, ``hlist``, ``quote``, ``keypress``;
- characters: ``nbsp``, ``ndash``, ``mdash``, ``snd``, ``!`` (a pipe), ``=``;
- parser functions ``formatnum:``, ``lc:``/``uc:``/``ucfirst:``/``lcfirst:``; other ``#…:`` functions and
  magic words (``PAGENAME``, ``CURRENTYEAR``: not deterministic) are dropped.

Dropped on purpose: citations and footnotes (``cite …``, ``sfn``, ``efn``, ``refn``, ``harvnb``, ``rp``,
``citation needed``…), ``IPAc-xx`` (pronunciation keys in pieces), hatnotes, infoboxes, navboxes.

The caller (:func:`corpus.sources.wikitext.strip_wikitext`) hands over the inside of each outermost
``{{…}}``; a rendered template's arguments are split at top-level ``|`` (not inside nested ``{{…}}`` or
``[[…]]``), and templates nested in them are rendered the same way. Links in the output are left for
the caller, which renders links after templates.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from corpus.sources import wikiconvert

_TOKENS = re.compile(r"\{\{|\}\}|\[\[|\]\]|\|")
_NAME_END = re.compile(r"[|{}\[\]]")
_SPACES = re.compile(r"[\s_]+")

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
_MONTH_NUMBER = {m.casefold(): i + 1 for i, m in enumerate(MONTHS)} | {m[:3].casefold(): i + 1 for i, m in enumerate(MONTHS)}


class Args:
    """A template's arguments: positional ones in order (``pos``) and named ones (``named``)."""

    __slots__ = ("pos", "named")

    def __init__(self, pos: list[str], named: dict[str, str]) -> None:
        self.pos, self.named = pos, named

    def get(self, i: int, default: str = "") -> str:
        return self.pos[i] if i < len(self.pos) else default

    def flag(self, *names: str) -> str:
        """The lower-cased value of the first named argument present ("" if none)."""
        for n in names:
            if n in self.named:
                return self.named[n].strip().lower()
        return ""


# --------------------------------------------------------------------------- splitting


def _split(inner: str) -> list[str]:
    """``inner`` split at the ``|`` that are outside nested ``{{…}}`` and ``[[…]]``."""
    parts: list[str] = []
    depth_t = depth_l = 0
    start = 0
    for m in _TOKENS.finditer(inner):
        tok = m.group()
        if tok == "{{":
            depth_t += 1
        elif tok == "}}":
            depth_t = max(0, depth_t - 1)
        elif tok == "[[":
            depth_l += 1
        elif tok == "]]":
            depth_l = max(0, depth_l - 1)
        elif depth_t == 0 and depth_l == 0:
            parts.append(inner[start:m.start()])
            start = m.end()
    parts.append(inner[start:])
    return parts


def _args(parts: list[str], render: Callable[[str], str]) -> Args:
    pos: list[str] = []
    named: dict[str, str] = {}
    for part in parts:
        eq = part.find("=")
        # "=" inside a nested template or link does not make the argument named
        if eq > 0 and "{{" not in part[:eq] and "[[" not in part[:eq]:
            named[part[:eq].strip().lower()] = render(part[eq + 1:]).strip()
        else:
            pos.append(render(part).strip())
    return Args(pos, named)


def template_name(inner: str) -> str:
    """The normalised name of a template from its inside: case-folded, ``_``/space runs as one space,
    ``Template:`` and ``subst:`` prefixes dropped; for a parser function, up to and with its ``:``."""
    m = _NAME_END.search(inner)
    name = _SPACES.sub(" ", inner[:m.start()] if m else inner).strip().casefold()
    for prefix in ("safesubst:", "subst:", "template:", "msg:"):
        if name.startswith(prefix):
            name = name[len(prefix):].strip()
    if ":" in name:
        head = name.split(":", 1)[0]
        if head.startswith("#") or head in _PARSER_FUNCTIONS:
            return head + ":"
    return name


def render(inner: str, render_nested: Callable[[str], str], lang: str | None = None) -> str:
    """What a reader sees of ``{{inner}}``: its text for the templates above, else ""."""
    name = template_name(inner)
    if name.endswith(":"):
        fn = _PARSER_FUNCTIONS.get(name[:-1])
        if fn is None:
            return ""
        value = render_nested(inner.split(":", 1)[1].split("|", 1)[0]).strip()
        return fn(value)
    fn = _RENDER.get(name) or _family(name)
    if fn is None:
        return ""
    parts = _split(inner)[1:]
    return fn(_args(parts, render_nested), lang)


def _family(name: str) -> Callable[[Args, str | None], str] | None:
    """Renderers for whole families of names (``lang-fr``, ``IPA-de``, zh ``link-ja``); ``IPAc-en`` and
    the like (pronunciation keys in pieces) are not one of them."""
    if name.startswith(("lang-", "ipa-", "link-")):
        return _first
    return None


# --------------------------------------------------------------------------- simple renderers


def _first(a: Args, lang: str | None) -> str:
    return a.get(0)


def _second(a: Args, lang: str | None) -> str:
    return a.get(1) or a.get(0)


def _last(a: Args, lang: str | None) -> str:
    return a.pos[-1] if a.pos else ""


def _join(sep: str) -> Callable[[Args, str | None], str]:
    return lambda a, lang: sep.join(p for p in a.pos if p)


def _const(text: str) -> Callable[[Args, str | None], str]:
    return lambda a, lang: text


def _text_arg(a: Args, lang: str | None) -> str:
    return a.named.get("text") or a.named.get("1") or a.get(0)


def _nihongo(a: Args, lang: str | None) -> str:
    english, japanese, romaji = a.get(0), a.get(1), a.get(2)
    extra = [p for p in a.pos[3:5] if p]
    inside = ", ".join(p for p in (japanese, romaji, *extra) if p)
    if english:
        return f"{english} ({inside})" if inside else english
    if japanese:
        rest = ", ".join(p for p in (romaji, *extra) if p)
        return f"{japanese} ({rest})" if rest else japanese
    return romaji


def _nihongo3(a: Args, lang: str | None) -> str:   # {{nihongo3|English|日本語|rōmaji}}: rōmaji first
    english, japanese, romaji = a.get(0), a.get(1), a.get(2)
    if not romaji:
        return _nihongo(a, lang)
    inside = ", ".join(p for p in (japanese, english) if p)
    return f"{romaji} ({inside})" if inside else romaji


def _frac(a: Args, lang: str | None) -> str:
    p = [x for x in a.pos if x]
    if len(p) >= 3:
        return f"{p[0]} {p[1]}/{p[2]}"
    if len(p) == 2:
        return f"{p[0]}/{p[1]}"
    return f"1/{p[0]}" if p else ""


def _as_of(a: Args, lang: str | None) -> str:
    y, m, d = a.get(0), a.get(1), a.get(2)
    when = format_date(y, m, d, dmy=a.flag("df") in ("y", "yes"), lang=lang)
    if lang == "zh":
        return f"截至{when}"
    lead = "as of" if a.flag("lc") in ("y", "yes") else "As of"
    return f"{lead} {when}" if when else lead


def _circa(a: Args, lang: str | None) -> str:
    return f"c. {a.get(0)}" if a.get(0) else "c."


def _sortname(a: Args, lang: str | None) -> str:
    return " ".join(p for p in (a.get(0), a.get(1)) if p)


def _sort(a: Args, lang: str | None) -> str:
    return a.get(1) or a.get(0)


def _tsl(a: Args, lang: str | None) -> str:   # zh {{tsl|ja|日本語名|中文名}}: the local name
    return a.get(2) or a.get(1)


def _keypress(a: Args, lang: str | None) -> str:
    return "+".join(p for p in a.pos if p)


def _angbr(a: Args, lang: str | None) -> str:
    return f"⟨{a.get(0)}⟩"


def _currency(symbol: str) -> Callable[[Args, str | None], str]:
    return lambda a, lang: f"{symbol}{a.get(0)}"


def _railgauge(a: Args, lang: str | None) -> str:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*mm", a.get(0))
    return f"{wikiconvert.group(m.group(1))} mm" if m else ""


def _birth_death_zh(a: Args, lang: str | None) -> str:   # zh {{bd|1900年|1月1日|1980年|2月3日}}
    born = "".join(a.pos[:2])
    died = "".join(a.pos[2:4])
    return f"{born}—{died}" if died else born


# --------------------------------------------------------------------------- dates


def _month(text: str) -> int | None:
    text = text.strip()
    if text.isdecimal():
        n = int(text)
        return n if 1 <= n <= 12 else None
    return _MONTH_NUMBER.get(text.casefold().rstrip("."))


def format_date(y: str, m: str = "", d: str = "", dmy: bool = False, lang: str | None = None) -> str:
    """``y``/``m``/``d`` (any of m, d empty) as "March 5, 2001" (``dmy``: "5 March 2001"; zh: "2001年3月5日")."""
    y, d = y.strip(), d.strip()
    month = _month(m) if m.strip() else None
    day = str(int(d)) if d.isdecimal() else d
    if lang == "zh":
        return f"{y}年" + (f"{month}月" if month else "") + (f"{day}日" if month and day else "")
    if not month:
        return y
    name = MONTHS[month - 1]
    if not day:
        return f"{name} {y}".strip()
    return f"{day} {name} {y}".strip() if dmy else f"{name} {day}, {y}".strip(", ")


def _ymd(pos: list[str]) -> tuple[str, str, str]:
    """Year, month, day of a date template's positional arguments (also "2001-03-05" in the first)."""
    first = pos[0] if pos else ""
    m = re.fullmatch(r"(\d{3,4})-(\d{1,2})(?:-(\d{1,2}))?", first.strip())
    if m:
        return m.group(1), m.group(2), m.group(3) or ""
    return first, pos[1] if len(pos) > 1 else "", pos[2] if len(pos) > 2 else ""


def _dmy(a: Args, default: bool = False) -> bool:
    if a.flag("df") in ("y", "yes", "1"):
        return True
    if a.flag("mf") in ("y", "yes", "1"):
        return False
    return default


def _date_template(default_dmy: bool) -> Callable[[Args, str | None], str]:
    def fn(a: Args, lang: str | None) -> str:
        y, m, d = _ymd(a.pos)
        if not re.fullmatch(r"\d{1,4}", y.strip()):
            return " ".join(p for p in a.pos if p)   # a date written as text: show it
        return format_date(y, m, d, dmy=_dmy(a, default_dmy), lang=lang)
    return fn


def _age(y1: str, m1: str, d1: str, y2: str, m2: str, d2: str) -> int | None:
    try:
        a = (int(y1), _month(m1) or 1, int(d1) if d1.strip().isdecimal() else 1)
        b = (int(y2), _month(m2) or 1, int(d2) if d2.strip().isdecimal() else 1)
    except ValueError:
        return None
    return a[0] - b[0] - ((a[1], a[2]) < (b[1], b[2]))


def _death_date_and_age(a: Args, lang: str | None) -> str:
    p = a.pos + [""] * 6
    died = format_date(p[0], p[1], p[2], dmy=_dmy(a), lang=lang)
    age = _age(*p[:6])
    if age is None or age < 0:
        return died
    return f"{died}（享年{age}岁）" if lang == "zh" else f"{died} (aged {age})"


def _death_year_and_age(a: Args, lang: str | None) -> str:
    died, born = a.get(0), a.get(1)
    if died.isdecimal() and born.isdecimal():
        age = int(died) - int(born)
        return f"{died}（享年{age - 1}–{age}岁）" if lang == "zh" else f"{died} (aged {age - 1}–{age})"
    return died


def _date(a: Args, lang: str | None) -> str:
    """{{date|2001-03-05}} (day-month-year by default; a second argument "mdy" for month first)."""
    text = a.get(0)
    m = re.fullmatch(r"(\d{3,4})-(\d{1,2})(?:-(\d{1,2}))?", text.strip())
    if not m:
        return text
    return format_date(m.group(1), m.group(2), m.group(3) or "", dmy=a.get(1).lower() != "mdy", lang=lang)


# --------------------------------------------------------------------------- convert


def _convert(a: Args, lang: str | None, abbr_default: str = "") -> str:
    return wikiconvert.render(a.pos, a.named, lang, abbr_default)


def _cvt(a: Args, lang: str | None) -> str:
    return _convert(a, lang, abbr_default="on")


# --------------------------------------------------------------------------- parser functions


def _formatnum(value: str) -> str:
    m = re.fullmatch(r"([-−]?)(\d+)(\.\d+)?", value.strip())
    if not m:
        return value
    return f"{m.group(1)}{int(m.group(2)):,}{m.group(3) or ''}"


_PARSER_FUNCTIONS: dict[str, Callable[[str], str]] = {
    "formatnum": _formatnum,
    "lc": str.lower,
    "uc": str.upper,
    "lcfirst": lambda s: s[:1].lower() + s[1:],
    "ucfirst": lambda s: s[:1].upper() + s[1:],
}


# --------------------------------------------------------------------------- the table

_RENDER: dict[str, Callable[[Args, str | None], str]] = {}


def _register(names: str, fn: Callable[[Args, str | None], str]) -> None:
    for n in names.split(";"):
        _RENDER[n.strip()] = fn


_register("convert;convert/2", _convert)
_register("cvt", _cvt)
_register("start date;end date;start date and age;end date and age;birth date;death date;birth date and age;"
          "birth-date;death-date;film date;release date;start-date;end-date;dob", _date_template(False))
_register("dts;date table sorting", _date_template(True))
_register("death date and age;death-date and age", _death_date_and_age)
_register("birth year and age;birth year", _first)
_register("death year and age", _death_year_and_age)
_register("date", _date)
_register("as of", _as_of)
_register("circa;c.;ca.", _circa)
_register("lang;langx;native name;lang2", _second)
_register("transl;transliteration;script;resize;font;font color;color", _last)
_register("nihongo;nihongo4;nihongo foot", _nihongo)
_register("nihongo2", _first)
_register("nihongo3", _nihongo3)
_register("ipa;ipa2;ipa audio link", _first)
_register("abbr;abbrlink;tooltip;visible anchor;vanchor;nowrap;nobr;nobreak;small;smaller;big;larger;midsize;"
          "sup;sub;smallcaps;sc;sc1;em;strong;var;mvar;math;nts;nobold;noitalic;flag;flagcountry;flagu;"
          "flag country;ill;interlanguage link;illm;interlanguage link multi;le;lj;ilh;internal link helper;"
          "plainlist;flatlist;code;samp;kbd;proper name;not a typo;bigger", _first)
_register("quote;blockquote;quotation;cquote;quote box;poem quote", _text_arg)
_register("chem;chem2;linktext", _join(""))
_register("hlist;ubl;unbulleted list;flatlist items", _join(", "))
_register("frac;sfrac;fraction", _frac)
_register("sortname", _sortname)
_register("sort;hs", _sort)
_register("tsl;translink", _tsl)
_register("keypress;key press", _keypress)
_register("angbr;angle bracket", _angbr)
_register("us$", _currency("US$"))
_register("railgauge;rail gauge", _railgauge)
_register("bd;生卒", _birth_death_zh)
_register("nbsp;spaces;space", _const(" "))
_register("nbhyph", _const("-"))
_register("ndash;en dash", _const("–"))
_register("mdash;em dash;mdashb", _const("—"))
_register("snd;spaced ndash;spnd;sndash", _const(" – "))
_register("!", _const("|"))
_register("=", _const("="))
_register("!!", _const("||"))
_register("'s", _const("'s"))
_register("'", _const("'"))
_register("okina", _const("ʻ"))
_register("·;dot;middot", _const(" · "))
_register("•;bull;bullet", _const(" • "))
# "respell" joins its syllables with hyphens
_RENDER["respell"] = _join("-")
# "sic" shows its argument as written (an argument "hide" aside)
_RENDER["sic"] = lambda a, lang: next((p for p in a.pos if p and p.lower() not in ("hide", "?")), "")
