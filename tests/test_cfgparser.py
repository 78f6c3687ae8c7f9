"""cfgparser: Python 2.7's SafeConfigParser rules, which the 2012 layer files rely on.

Every expected value here was produced by running Python 2.7.18's own
ConfigParser.SafeConfigParser(dict_type=OrderedDict) on the same text, e.g.

    python2.7 -c "import ConfigParser as c; p = c.SafeConfigParser(); p.read(['f.cfg']); print repr(p.get('a', 'x'))"

and pasting the answer (CI has no Python 2). Exception classes are compared by their
Python 2 family: Python 2's Interpolation*Error are one InterpolationError here.
"""
import pytest

from cudaconvnet import cfgparser as C


def parser(tmp_path, text, name="f.cfg"):
    path = tmp_path / name
    path.write_bytes(text.encode("latin-1") if isinstance(text, str) else text)
    p = C.SafeConfigParser()
    assert p.read([str(path)]) == [str(path)]
    return p


def sections_and_items(p):
    return {s: p.items(s) for s in p.sections()}


# -- comments ---------------------------------------------------------------------------------
def test_semicolon_is_a_comment_only_after_whitespace(tmp_path):
    p = parser(tmp_path, "[a]\nx=1 ;c\ny=1;c\nz=1\t;c\nw=;c\nv= ;c\nu=a ; b ; c\nh=1 #c\n")
    # python2.7: x '1', y '1;c', z '1', w ';c', v ';c', u 'a', h '1 #c'
    assert p.get("a", "x") == "1"
    assert p.get("a", "y") == "1;c"
    assert p.get("a", "z") == "1"
    # at the start of the value Python 2 looked at optval[-1] (the last char): not a space
    assert p.get("a", "w") == ";c"
    assert p.get("a", "v") == ";c"  # the leading space went with the '=' match
    assert p.get("a", "u") == "a"
    assert p.get("a", "h") == "1 #c"  # '#' is never an inline comment


def test_comment_lines(tmp_path):
    p = parser(tmp_path, "# hi\n; ho\n\n[a]\nx=1\n#y=2\n;z=3\n")
    assert sections_and_items(p) == {"a": [("x", "1")]}


def test_rem_lines_are_comments(tmp_path):
    # python2.7 items: [('remark', '2'), ('rem', '3')]: 'Rem = 5' is a comment line too
    p = parser(tmp_path, "[a]\nrem x=1\nREM y\nRem = 5\nremark=2\nrem=3\n")
    assert sections_and_items(p) == {"a": [("remark", "2"), ("rem", "3")]}


# -- values -----------------------------------------------------------------------------------
def test_continuation_lines_join_with_newlines(tmp_path):
    p = parser(tmp_path, "[a]\nx=1\n  2\n\t3\ny=4\n \nz=5\n\n  6\n")
    # python2.7: [('x', '1\n2\n3'), ('y', '4'), ('z', '5\n6')]: blank lines do not end a value
    assert sections_and_items(p) == {"a": [("x", "1\n2\n3"), ("y", "4"), ("z", "5\n6")]}


def test_continuation_right_after_a_header_is_a_parse_error(tmp_path):
    path = tmp_path / "f.cfg"
    path.write_text("[a]\n  x=1\n")
    with pytest.raises(C.ParsingError) as ei:
        C.SafeConfigParser().read([str(path)])
    assert ei.value.errors == [(2, repr("  x=1\n"))]


def test_double_quotes_mean_empty(tmp_path):
    p = parser(tmp_path, '[a]\nx=""\ny=" "\nz=""""\n')
    assert sections_and_items(p) == {"a": [("x", ""), ("y", '" "'), ("z", '""""')]}


def test_colon_and_equals(tmp_path):
    p = parser(tmp_path, "[a]\nx : 1\ny=a:b\nz:a=b\n")
    assert sections_and_items(p) == {"a": [("x", "1"), ("y", "a:b"), ("z", "a=b")]}


def test_section_headers(tmp_path):
    # python2.7: sections ['a', 'b', ' c ', 'd']; the rest of a header line is ignored
    p = parser(tmp_path, "[a] ; comment\nx=1\n[b]]\ny=2\n[ c ]\nz=3\n[d]x=1\n")
    assert p.sections() == ["a", "b", " c ", "d"]
    assert p.items("d") == []


def test_keys_are_lower_cased_sections_are_not(tmp_path):
    p = parser(tmp_path, "[Conv1]\nTYPE=conv\nInputs=data\n")
    assert p.sections() == ["Conv1"]
    assert p.get("Conv1", "type") == "conv"
    assert p.get("Conv1", "INPUTS") == "data"
    assert p.has_option("Conv1", "Type") and not p.has_section("conv1")


def test_duplicate_sections_merge_and_last_key_wins(tmp_path):
    p = parser(tmp_path, "[a]\nx=1\n[b]\ny=1\n[a]\nx=2\nz=3\nX=4\n")
    # python2.7: sections ['a', 'b']; a: [('x', '4'), ('z', '3')]
    assert sections_and_items(p) == {"a": [("x", "4"), ("z", "3")], "b": [("y", "1")]}


def test_crlf_lines(tmp_path):
    p = parser(tmp_path, b'[a]\r\nx=1\r\ny=""\r\n\r\nz=1 ;c\r\n  cont\r\n[b] \r\n')
    assert sections_and_items(p) == {"a": [("x", "1"), ("y", ""), ("z", "1\ncont")], "b": []}


def test_lone_cr_is_not_a_line_break(tmp_path):
    # Python 2 read text files without universal newlines: this is one line
    p = parser(tmp_path, b"[a]\rx=1\ry=2\r")
    assert p.sections() == ["a"]
    assert p.items("a") == []


def test_latin1_bytes_pass_through(tmp_path):
    p = parser(tmp_path, b"[a\xe9]\nx=\xe9\xff\n")
    assert p.sections() == ["a\xe9"]
    assert p.get("a\xe9", "x") == "\xe9\xff"
    # option names are lowered as Python 2 lowered byte strings: ASCII only
    p = parser(tmp_path, b"[a]\nX\xc4=1\n")
    assert p.items("a") == [("x\xc4", "1")]


# -- interpolation ----------------------------------------------------------------------------
def test_interpolation(tmp_path):
    p = parser(tmp_path, "[a]\nx=1\ny=%(x)s0\nz=%(__name__)s\nw=100%%\nq=%(Y)s\n")
    assert p.get("a", "y") == "10"
    assert p.get("a", "z") == "a"
    assert p.get("a", "w") == "100%"
    assert p.get("a", "q") == "10"  # the reference is lower-cased too, and recursive


def test_default_section(tmp_path):
    p = parser(tmp_path, "[DEFAULT]\nx=1\nn=%(__name__)s\n[a]\ny=%(x)s\n[b]\nx=2\nz=%(__name__)s\n")
    assert p.sections() == ["a", "b"]  # DEFAULT is not a section
    assert not p.has_section("DEFAULT")
    # python2.7: a [('x', '1'), ('n', 'a'), ('y', '1')]; b [('x', '2'), ('n', 'b'), ('z', 'b')]
    assert p.items("a") == [("x", "1"), ("n", "a"), ("y", "1")]
    assert p.items("b") == [("x", "2"), ("n", "b"), ("z", "b")]
    assert p.has_option("a", "x") and p.has_option("DEFAULT", "x") and p.has_option(None, "x")
    assert p.get("DEFAULT", "x") == "1"


@pytest.mark.parametrize("value,message", [
    ("5%", "'%' must be followed by '%' or '(', found: '%'"),
    ("%(x)d", "bad interpolation variable reference '%(x)d'"),
    ("%(nope)s", "Bad value substitution:\n\tsection: [a]\n\toption : v\n\tkey    : nope\n\trawval : \n"),
])
def test_interpolation_errors(tmp_path, value, message):
    p = parser(tmp_path, "[a]\nx=1\nv=%s\n" % value)
    with pytest.raises(C.InterpolationError) as ei:
        p.get("a", "v")
    assert str(ei.value) == message
    with pytest.raises(C.InterpolationError):
        p.getint("a", "v")


def test_interpolation_depth(tmp_path):
    p = parser(tmp_path, "[a]\nx=%(y)s\ny=%(x)s\n")
    with pytest.raises(C.InterpolationError) as ei:
        p.get("a", "x")
    assert str(ei.value) == ("Value interpolation too deeply recursive:\n\tsection: [a]\n\toption : x\n"
                             "\trawval : %(y)s\n")


# -- typed getters ----------------------------------------------------------------------------
@pytest.mark.parametrize("value,expected", [
    ("+5", 5), ("-0", 0), ("007", 7), (" 12 ", 12),
    ("1_0", ValueError), ("0x10", ValueError), ("1.0", ValueError), ("10L", ValueError), ("", ValueError),
])
def test_getint_is_python2_int(tmp_path, value, expected):
    p = parser(tmp_path, "[a]\nv=%s\n" % value)
    if expected is ValueError:
        with pytest.raises(ValueError):
            p.getint("a", "v")
    else:
        v = p.getint("a", "v")
        assert v == expected and type(v) is int


@pytest.mark.parametrize("value,expected", [
    ("inf", float("inf")), ("-Infinity", float("-inf")), ("1e-3", 0.001), (".5", 0.5), ("5.", 5.0), ("3", 3.0),
    ("1_0.5", ValueError), ("1.5f", ValueError), ("0x1p3", ValueError),
])
def test_getfloat_is_python2_float(tmp_path, value, expected):
    p = parser(tmp_path, "[a]\nv=%s\n" % value)
    if expected is ValueError:
        with pytest.raises(ValueError):
            p.getfloat("a", "v")
    else:
        v = p.getfloat("a", "v")
        assert v == expected and type(v) is float


@pytest.mark.parametrize("value,expected", [
    ("True", True), ("yes", True), ("on", True), ("1", True),
    ("FALSE", False), ("No", False), ("off", False), ("0", False),
    ("2", ValueError), ("t", ValueError),
])
def test_getboolean(tmp_path, value, expected):
    p = parser(tmp_path, "[a]\nv=%s\n" % value)
    if expected is ValueError:
        with pytest.raises(ValueError) as ei:
            p.getboolean("a", "v")
        assert str(ei.value) == "Not a boolean: %s" % value
    else:
        assert p.getboolean("a", "v") is expected


def test_py2_int_and_float_helpers():
    # Python 2.7's int(), run: whitespace may also sit between the sign and the digits
    for text, value in ((" -3 ", -3), ("+ 3", 3), ("\t-\t7\n", -7), ("- 0", 0), ("010", 10)):
        assert C.py2_int(text) == value, text
    for bad in ("1_0", "\u0661", "1 2", "3.", "++3", "+ +3", "+", "3L", "0x10"):
        with pytest.raises(ValueError):
            C.py2_int(bad)
    assert C.py2_float(" 2.5\n") == 2.5
    for bad in ("1_0", "\u0661", "", "1.5\x1c"):  # '\x1c' is whitespace to Python 3 only
        with pytest.raises(ValueError):
            C.py2_float(bad)


# -- errors -----------------------------------------------------------------------------------
def test_missing_section_and_option(tmp_path):
    p = parser(tmp_path, "[a]\nx=1\n")
    with pytest.raises(C.NoSectionError) as ei:
        p.get("nosec", "x")
    assert str(ei.value) == "No section: 'nosec'"
    with pytest.raises(C.NoOptionError) as ei:
        p.get("a", "nokey")
    assert str(ei.value) == "No option 'nokey' in section: 'a'"
    with pytest.raises(C.NoOptionError):
        p.get("DEFAULT", "x")


def test_no_section_header(tmp_path):
    path = tmp_path / "f.cfg"
    path.write_text("x=1\n[a]\n")
    with pytest.raises(C.MissingSectionHeaderError) as ei:
        C.SafeConfigParser().read([str(path)])
    assert str(ei.value) == "File contains no section headers.\nfile: %s, line: 1\n'x=1\\n'" % path


def test_parse_errors_are_collected(tmp_path):
    path = tmp_path / "f.cfg"
    path.write_text("[a]\nx\ny=1\n=3\n")
    with pytest.raises(C.ParsingError) as ei:
        C.SafeConfigParser().read([str(path)])
    # python2.7: "File contains parsing errors: f.cfg\n\t[line  2]: 'x\\n'\n\t[line  4]: '=3\\n'"
    assert str(ei.value) == "File contains parsing errors: %s\n\t[line  2]: 'x\\n'\n\t[line  4]: '=3\\n'" % path


def test_unreadable_files_are_skipped(tmp_path):
    path = tmp_path / "f.cfg"
    path.write_text("[a]\nx=1\n")
    p = C.SafeConfigParser()
    assert p.read([str(tmp_path / "nope.cfg"), str(path)]) == [str(path)]
    assert p.read(str(path)) == [str(path)]  # a single name is accepted too


def test_items_of_unknown_section(tmp_path):
    p = parser(tmp_path, "[a]\nx=1\n")
    with pytest.raises(C.NoSectionError):
        p.items("nosec")
