"""The .cfg reader the 2012 code used: Python 2.7's SafeConfigParser, re-implemented.

layer.py read layers.cfg and layer-params.cfg with SafeConfigParser(dict_type=OrderedDict).
Its rules differ from Python 3's configparser, and 2012 files rely on them: repeated
sections merge, a ';' starts an inline comment only after whitespace, '#' never does,
'rem' lines are comments, option names are lower-cased, `%(name)s` interpolates and a
lone '%' is an error. Files are read as bytes (latin-1), as Python 2 did.
"""
import re

DEFAULTSECT = "DEFAULT"
MAX_INTERPOLATION_DEPTH = 10

# Python 2 str methods on bytes know only ASCII whitespace and ASCII letters.
_WS = " \t\n\r\x0b\x0c"
_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

_SECTCRE = re.compile(r"\[(?P<header>[^]]+)\]", re.ASCII)
_OPTCRE = re.compile(r"(?P<option>[^:=\s][^:=]*)\s*(?P<vi>[:=])\s*(?P<value>.*)$", re.ASCII)
_INTERPVAR = re.compile(r"%\(([^)]+)\)s", re.ASCII)
_PY2_INT = re.compile(r"[ \t\n\r\x0b\x0c]*([+-]?)[ \t\n\r\x0b\x0c]*([0-9]+)[ \t\n\r\x0b\x0c]*\Z")
_BOOLEAN_STATES = {"1": True, "yes": True, "true": True, "on": True,
                   "0": False, "no": False, "false": False, "off": False}


class ConfigError(Exception):
    """Any error of the .cfg reader (the 2012 ConfigParser.Error family)."""


class NoSectionError(ConfigError):
    def __init__(self, section):
        super().__init__("No section: %r" % (section,))
        self.section = section


class NoOptionError(ConfigError):
    def __init__(self, option, section):
        super().__init__("No option %r in section: %r" % (option, section))
        self.option, self.section = option, section


class InterpolationError(ConfigError):
    def __init__(self, option, section, msg):
        super().__init__(msg)
        self.option, self.section = option, section


class MissingSectionHeaderError(ConfigError):
    def __init__(self, filename, lineno, line):
        super().__init__("File contains no section headers.\nfile: %s, line: %d\n%r"
                         % (filename, lineno, line))
        self.filename, self.lineno, self.line = filename, lineno, line


class ParsingError(ConfigError):
    def __init__(self, filename):
        super().__init__("File contains parsing errors: %s" % filename)
        self.filename = filename
        self.errors = []

    def append(self, lineno, line):
        self.errors.append((lineno, line))
        self.args = (self.args[0] + "\n\t[line %2d]: %s" % (lineno, line),)


def py2_strip(s):
    return s.strip(_WS)


def py2_lower(s):
    return s.translate(_LOWER)


def py2_int(s):
    """int(s) as Python 2 did on a str: ASCII digits, optional sign and whitespace, also
    between the sign and the digits ('+ 3')."""
    m = _PY2_INT.match(s) if isinstance(s, str) else None
    if not m:
        raise ValueError("invalid literal for int() with base 10: %r" % (s,))
    return int(m.group(1) + m.group(2))


def py2_float(s):
    """float(s) as Python 2 did on a str (no '_' digit separators, ASCII only)."""
    if not isinstance(s, str) or "_" in s or not s.isascii():
        raise ValueError("could not convert string to float: %r" % (s,))
    return float(s)


class SafeConfigParser:
    """Python 2.7 SafeConfigParser with an ordered section dict."""

    def __init__(self):
        self._defaults = {}
        self._sections = {}

    # -- reading --------------------------------------------------------------------------
    def read(self, filenames):
        """Reads each file that can be opened, silently skipping the rest (as 2.7 did)."""
        if isinstance(filenames, str):
            filenames = [filenames]
        done = []
        for filename in filenames:
            try:
                with open(filename, "rb") as f:
                    text = f.read().decode("latin-1")
            except OSError:
                continue
            self.read_string(text, filename)
            done.append(filename)
        return done

    def read_string(self, text, filename="<string>"):
        cursect = None
        optname = None
        error = None
        for lineno, line in enumerate(_split_on_newline(text), 1):
            if py2_strip(line) == "" or line[0] in "#;":
                continue
            if line[0] in "rR" and py2_lower(_first_word(line)) == "rem":
                continue
            if line[0] in _WS and cursect is not None and optname:
                value = py2_strip(line)
                if value:
                    cursect[optname].append(value)
                continue
            mo = _SECTCRE.match(line)
            if mo:
                sectname = mo.group("header")
                if sectname in self._sections:
                    cursect = self._sections[sectname]
                elif sectname == DEFAULTSECT:
                    cursect = self._defaults
                else:
                    cursect = {"__name__": sectname}
                    self._sections[sectname] = cursect
                optname = None
            elif cursect is None:
                raise MissingSectionHeaderError(filename, lineno, line)
            else:
                mo = _OPTCRE.match(line)
                if mo:
                    optname, vi, optval = mo.group("option", "vi", "value")
                    optname = py2_lower(optname.rstrip(_WS))
                    if ";" in optval:
                        # ';' comments only when the first one follows whitespace; at position
                        # 0 Python 2 looked at optval[-1] (an index of -1), so do we.
                        pos = optval.find(";")
                        if optval[pos - 1] in _WS:
                            optval = optval[:pos]
                    optval = py2_strip(optval)
                    if optval == '""':
                        optval = ""
                    cursect[optname] = [optval]
                else:
                    if error is None:
                        error = ParsingError(filename)
                    error.append(lineno, repr(line))
        if error is not None:
            raise error
        for options in [self._defaults] + list(self._sections.values()):
            for name, val in options.items():
                if isinstance(val, list):
                    options[name] = "\n".join(val)

    # -- queries --------------------------------------------------------------------------
    def sections(self):
        return list(self._sections)

    def has_section(self, section):
        return section in self._sections

    def has_option(self, section, option):
        if not section or section == DEFAULTSECT:
            return py2_lower(option) in self._defaults
        if section not in self._sections:
            return False
        option = py2_lower(option)
        return option in self._sections[section] or option in self._defaults

    def items(self, section):
        if section not in self._sections:
            raise NoSectionError(section)
        d = dict(self._defaults)
        d.update(self._sections[section])
        return [(k, self.get(section, k)) for k in d if k != "__name__"]

    def get(self, section, option):
        if section in self._sections:
            sectiondict = self._sections[section]
        elif section == DEFAULTSECT:
            sectiondict = {}
        else:
            raise NoSectionError(section)
        lookup = dict(self._defaults)
        lookup.update(sectiondict)
        option = py2_lower(option)
        if option not in lookup:
            raise NoOptionError(option, section)
        value = lookup[option]
        out = []
        self._interpolate_some(option, out, value, section, lookup, 1)
        return "".join(out)

    def getint(self, section, option):
        return py2_int(self.get(section, option))

    def getfloat(self, section, option):
        return py2_float(self.get(section, option))

    def getboolean(self, section, option):
        v = self.get(section, option)
        if py2_lower(v) not in _BOOLEAN_STATES:
            raise ValueError("Not a boolean: %s" % v)
        return _BOOLEAN_STATES[py2_lower(v)]

    def _interpolate_some(self, option, accum, rest, section, lookup, depth):
        if depth > MAX_INTERPOLATION_DEPTH:
            raise InterpolationError(option, section,
                                     "Value interpolation too deeply recursive:\n"
                                     "\tsection: [%s]\n\toption : %s\n\trawval : %s\n"
                                     % (section, option, rest))
        while rest:
            p = rest.find("%")
            if p < 0:
                accum.append(rest)
                return
            if p > 0:
                accum.append(rest[:p])
                rest = rest[p:]
            c = rest[1:2]
            if c == "%":
                accum.append("%")
                rest = rest[2:]
            elif c == "(":
                m = _INTERPVAR.match(rest)
                if m is None:
                    raise InterpolationError(option, section,
                                             "bad interpolation variable reference %r" % rest)
                var = py2_lower(m.group(1))
                rest = rest[m.end():]
                if var not in lookup:
                    raise InterpolationError(
                        option, section,
                        "Bad value substitution:\n\tsection: [%s]\n\toption : %s\n\tkey    : %s\n"
                        "\trawval : %s\n" % (section, option, var, rest))
                v = lookup[var]
                if "%" in v:
                    self._interpolate_some(option, accum, v, section, lookup, depth + 1)
                else:
                    accum.append(v)
            else:
                raise InterpolationError(option, section,
                                         "'%%' must be followed by '%%' or '(', found: %r" % (rest,))


def _first_word(line):
    return re.split(r"[ \t\n\r\x0b\x0c]", line, maxsplit=1)[0]


def _split_on_newline(text):
    """Lines as Python 2's readline() gave them on POSIX: split after '\\n' only."""
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines
