"""The command-line option parser of cuda-convnet: set_once, excuses, requires, expression
defaults, merging a checkpoint's options with new ones on resume, and the option tables the
programs print. Stands for 2012 options.py (cuda-convnet r561).
"""

import ast
import getopt
import operator
import os
import re
import sys

TERM_BOLD_START = "\033[1m"
TERM_BOLD_END = "\033[0m"


class OptionException(Exception):
    pass


class OptionMissingException(OptionException):
    pass


class OptionHelpException(OptionMissingException):
    """-h or --help was given. A subclass of OptionMissingException so that the 2012 handler
    (print the message, then the usage table) already does the right thing."""


class Option:
    # Class-level fallbacks, so that an instance restored from an older checkpoint whose
    # state lacks one of these attributes still works. Instances always set their own.
    set_once = False
    default = None
    excuses = ()
    requires = ()
    save = True
    value = None
    value_given = False

    def __init__(self, letter, name, desc, parser, set_once=False, default=None, excuses=(),
                 requires=(), save=True):
        if name is None:
            raise OptionException("Option -%s has no name" % letter)
        self.letter = letter
        self.name = name
        self.desc = desc
        self.parser = parser
        self.set_once = set_once
        self.default = default
        self.excuses = excuses
        self.requires = requires
        self.save = save

        self.value = None
        self.value_given = False
        # One-letter options are written -x, longer ones --name.
        self.prefixed_letter = min(2, len(letter)) * "-" + letter

    def __repr__(self):
        return "Option(%s, value=%r)" % (self.prefixed_letter, self.value)

    def set_value(self, value, parse=True):
        try:
            self.value = self.parser.parse(value) if parse else value
        except OptionException as e:
            raise OptionException("Unable to parse option %s (%s): %s"
                                  % (self.prefixed_letter, self.desc, e)) from None
        self.value_given = True

    def set_default(self):
        if self.default is not None:
            self.value = self.default

    def eval_expr_default(self, env):
        if not isinstance(self.default, OptionExpression) or self.value_given:
            return
        try:
            value = self.default.evaluate(env)
            if not self.parser.is_type(value):
                raise OptionException("expression result %s is not of right type (%s)"
                                      % (value, self.parser.get_type_str()))
        except Exception as e:
            raise OptionException("Unable to set default value for option %s (%s): %s"
                                  % (self.prefixed_letter, self.desc, e)) from None
        self.value = value

    def get_str_value(self, get_default_str=False):
        val = self.default if get_default_str else self.value
        if val is None:
            return ""
        if isinstance(val, OptionExpression):
            return val.expr
        return self.parser.to_string(val)


class OptionsParser:
    """Options by name. An option without a default is mandatory unless an option that
    excuses it (usually -f, the checkpoint to load) is given. Every option takes a value."""

    SORT_LETTER = 1
    SORT_DESC = 2
    SORT_EXPR_LAST = 3
    EXCLUDE_ALL = "all"

    def __init__(self):
        self.options = {}

    def add_option(self, letter, name, parser, desc, set_once=False, default=None, excuses=(),
                   requires=(), save=True):
        """default may be an OptionExpression over the other options' names, evaluated by
        eval_expr_defaults(). excuses: names of options that need not be given when this one
        is, or EXCLUDE_ALL. requires: names of options that must be given with this one.
        save=False: on resume the newly parsed value always replaces the checkpoint's."""
        if name in self.options:
            raise OptionException("Option %s is defined twice" % name)
        if excuses != self.EXCLUDE_ALL:
            excuses = [excuses] if isinstance(excuses, str) else list(excuses)
        requires = [requires] if isinstance(requires, str) else list(requires)
        self.options[name] = Option(letter, name, desc, parser, set_once, default, excuses,
                                    requires, save)

    def set_value(self, name, value, parse=True):
        self.options[name].set_value(value, parse=parse)

    def get_value(self, name):
        return self.options[name].value

    def delete_option(self, name):
        self.options.pop(name, None)

    def _excused(self, o, given):
        return any(o2.prefixed_letter in given for o2 in self.options.values()
                   if o2.excuses == self.EXCLUDE_ALL or o.name in o2.excuses)

    def parse(self, argv=None, eval_expr_defaults=False):
        """Parses argv (default sys.argv[1:], without the program name): -x VALUE for
        one-letter options, --name=VALUE (or --name VALUE) for the others. Expression
        defaults stay OptionExpression objects unless eval_expr_defaults is set.
        Returns the options dict."""
        if argv is None:
            argv = sys.argv[1:]
        short_opts = "".join("%s:" % o.letter for o in self.options.values()
                             if len(o.letter) == 1)
        long_opts = ["%s=" % o.letter for o in self.options.values() if len(o.letter) > 1]
        letters = {o.letter for o in self.options.values()}
        help_flags = []
        if "h" not in letters:
            short_opts += "h"
            help_flags.append("-h")
        if "help" not in letters:
            long_opts.append("help")
            help_flags.append("--help")
        try:
            pairs, rest = getopt.getopt(list(argv), short_opts, long_opts)
        except getopt.GetoptError as e:
            raise OptionException(str(e)) from None
        given = dict(pairs)  # the last of repeated options wins
        if any(flag in given for flag in help_flags):
            raise OptionHelpException("Usage requested (%s)"
                                      % next(f for f in help_flags if f in given))
        if rest:
            # getopt stops at the first bare word and 2012 dropped the rest silently.
            raise OptionException("Unexpected argument '%s' (options are given as "
                                  "--name=value or -x value)" % rest[0])

        for o in self.get_options_list(sort_order=self.SORT_EXPR_LAST):
            if o.prefixed_letter in given:
                o.set_value(given[o.prefixed_letter])
            else:
                if not self._excused(o, given) and o.default is None:
                    raise OptionMissingException("Option %s (%s) not supplied"
                                                 % (o.prefixed_letter, o.desc))
                o.set_default()
            if o.prefixed_letter in given:
                for o2 in self.get_options_list(sort_order=self.SORT_LETTER):
                    if o2.name in o.requires and o2.prefixed_letter not in given:
                        raise OptionMissingException(
                            "Option %s (%s) requires option %s (%s)"
                            % (o.prefixed_letter, o.desc, o2.prefixed_letter, o2.desc))
        if eval_expr_defaults:
            self.eval_expr_defaults()
        return self.options

    def merge_from(self, op2):
        """Merges op2 (the newly parsed command line) into this parser (the checkpoint's):
        options op2 was given, or does not save, replace ours; op2's defaults do not;
        options only op2 has are added."""
        for name in list(self.options):
            o2 = op2.options.get(name)
            if o2 is not None and (o2.value_given or not o2.save):
                if o2.set_once:
                    raise OptionException("Option %s (%s) cannot be changed"
                                          % (o2.prefixed_letter, o2.desc))
                self.options[name] = o2
        for name, o2 in op2.options.items():
            if name not in self.options:
                self.options[name] = o2

    def eval_expr_defaults(self):
        # Every expression sees the values as they were before any expression ran.
        env = {name: o.value for name, o in self.options.items()}
        for o in self.options.values():
            o.eval_expr_default(env)

    def all_values_given(self):
        # As in 2012, despite the name: true when any option that has a default was given.
        return any(o.value_given for o in self.options.values() if o.default is not None)

    def get_options_list(self, sort_order=SORT_LETTER):
        """The Option objects, by letter, by description, or as parse() checks them
        (SORT_EXPR_LAST: in parse_order, if the parser has one, else in definition order
        with expression defaults last)."""
        opts = list(self.options.values())
        if sort_order == self.SORT_LETTER:
            return sorted(opts, key=lambda o: o.letter)
        if sort_order == self.SORT_EXPR_LAST:
            # a parser may carry the order its 2012 original met its options in (a Python 2
            # dict's), which decides what parse() complains of first; options it lacks follow
            rank = {name: i for i, name in enumerate(getattr(self, "parse_order", None) or ())}
            return sorted(opts, key=lambda o: (rank.get(o.name, len(rank)), isinstance(o.default, OptionExpression)))
        return sorted(opts, key=lambda o: o.desc)

    def print_usage(self, print_constraints=False):
        print("%s usage:" % os.path.basename(sys.argv[0]))
        rows_def, rows_req = [], []
        for o in self.get_options_list():
            excs = " "
            if o.default is None:
                excs = ", ".join(sorted(o2.prefixed_letter for o2 in self.options.values()
                                        if o2.excuses == self.EXCLUDE_ALL
                                        or o.name in o2.excuses))
            reqs = ", ".join(sorted(o2.prefixed_letter for o2 in self.options.values()
                                    if o2.name in o.requires))
            typ = " <%s>" % o.parser.get_type_str()
            de = None if o.default is None else "[%s]" % o.get_str_value(get_default_str=True)
            row = (o.prefixed_letter, typ, o.desc, de, excs, reqs)
            (rows_req if o.default is None else rows_def).append(row)
        rows = rows_def + rows_req  # options with defaults first
        if not rows:
            return
        # Widths are of the visible text; the bold codes the 2012 code counted in the first
        # column are the 8 extra characters the row prefix "     " / "  -" takes up.
        w_opt = max(len(r[0]) + len(r[1]) for r in rows)
        widths = [w_opt + 8] + [self._longest_value(rows, key=lambda r, i=i: r[i])
                                for i in (2, 3, 4, 5)]
        names = ["    Option", "Description", "Default"]
        if print_constraints:
            names += ["Excused by", "Requires"]
        print(" ".join(self._bold(s.ljust(w)) for s, w in zip(names, widths)) + " ")
        for letter, typ, d, de, ex, req in rows:
            opt = (self._bold(letter) + typ + " " * (w_opt - len(letter) - len(typ)))
            line = ("     %s  -" if de is None else "    [%s] -") % opt
            line += " " + d.ljust(widths[1]) + " " + (de or " ").ljust(widths[2]) + " "
            if print_constraints:
                line += ex.ljust(widths[3]) + " " + req
            print(line)

    def print_values(self):
        opts = self.options.values()
        longest_desc = self._longest_value(opts, key=lambda o: o.desc)
        # 2012 pads the value column to the longest *default* value only.
        longest_def_value = self._longest_value(
            [o for o in opts if not o.value_given and o.default is not None],
            key=lambda o: o.get_str_value())
        for o in self.get_options_list(sort_order=self.SORT_DESC):
            is_default = not o.value_given and o.default is not None
            print("%s: %s %s" % (o.desc.ljust(longest_desc),
                                 o.get_str_value().ljust(longest_def_value),
                                 "[DEFAULT]" if is_default else ""))

    @staticmethod
    def _longest_value(values, key=lambda x: x):
        """Length of the longest key(v) over values (None counts as 0; no values: 0)."""
        return max((0 if key(v) is None else len(key(v)) for v in values), default=0)

    @staticmethod
    def _bold(text):
        isatty = getattr(sys.stdout, "isatty", None)
        try:
            tty = bool(isatty and isatty())
        except ValueError:  # a closed stream
            tty = False
        return TERM_BOLD_START + text + TERM_BOLD_END if tty else text


# Parsers. The scalar ones are used as classes (IntegerOptionParser itself, not an instance),
# as in 2012, so every method is a staticmethod; ListOptionParser is used as an instance.

def _python2_number_text(value):
    """value, or ValueError where Python 2's int() and float() (the 2012 parser's) refused it
    but Python 3's accept it: "1_000", and digits or spaces beyond ASCII ("\u0663", "\uff11")."""
    if isinstance(value, str) and ("_" in value or not value.isascii()):
        raise ValueError(value)
    return value


class OptionParser:
    @staticmethod
    def parse(value):
        return str(value)

    @staticmethod
    def to_string(value):
        return str(value)

    @staticmethod
    def get_type_str():
        return None

    @staticmethod
    def is_type(value):
        return isinstance(value, str)


class IntegerOptionParser(OptionParser):
    @staticmethod
    def parse(value):
        try:
            return int(_python2_number_text(value))
        except (TypeError, ValueError):
            raise OptionException("argument is not an integer") from None

    @staticmethod
    def get_type_str():
        return "int"

    @staticmethod
    def is_type(value):
        return type(value) is int


class BooleanOptionParser(OptionParser):
    @staticmethod
    def parse(value):
        try:
            v = int(_python2_number_text(value))
        except (TypeError, ValueError):
            v = None
        if v not in (0, 1):
            raise OptionException("argument is not a boolean")
        return v

    @staticmethod
    def get_type_str():
        return "0/1"

    @staticmethod
    def is_type(value):
        return type(value) is int and value in (0, 1)


class StringOptionParser(OptionParser):
    @staticmethod
    def get_type_str():
        return "string"

    @staticmethod
    def is_type(value):
        return type(value) is str


class FloatOptionParser(OptionParser):
    @staticmethod
    def parse(value):
        try:
            return float(_python2_number_text(value))
        except (TypeError, ValueError):
            raise OptionException("argument is not a float") from None

    @staticmethod
    def to_string(value):
        return "%.6g" % value

    @staticmethod
    def get_type_str():
        return "float"

    @staticmethod
    def is_type(value):
        return type(value) is float


_RANGE_RE = re.compile(r"^([0-9]+)-([0-9]+)$")


class RangeOptionParser(OptionParser):
    """"a-b" -> [a, ..., b]; "n" -> [n]."""

    @staticmethod
    def parse(value):
        value = str(value)
        m = _RANGE_RE.match(value)
        try:
            if m:
                first, last = int(m.group(1)), int(m.group(2))
                if last < first:  # 2012 returned an empty range here
                    raise ValueError(value)
                return list(range(first, last + 1))
            return [int(_python2_number_text(value))]
        except ValueError:
            raise OptionException("argument is neither an integer nor a range") from None

    @staticmethod
    def to_string(value):
        return "%d-%d" % (value[0], value[-1])

    @staticmethod
    def get_type_str():
        return "int[-int]"

    @staticmethod
    def is_type(value):
        return type(value) is list


class ListOptionParser(OptionParser):
    """Items separated by sepchar. parsers is one parser for a list of any length, or a
    list of parsers, one per position, for a list of exactly that length:
    ListOptionParser(FloatOptionParser) takes "0.5" or "0.5,0.3,...";
    ListOptionParser([FloatOptionParser, IntegerOptionParser]) takes "0.5,3" only."""

    def __init__(self, parsers, sepchar=","):
        self.parsers = parsers
        self.sepchar = sepchar

    def _fixed(self):
        return isinstance(self.parsers, (list, tuple))

    def parse(self, value):
        values = str(value).split(self.sepchar)
        if self._fixed() and len(values) != len(self.parsers):
            raise OptionException("requires %d arguments, given %d"
                                  % (len(self.parsers), len(values)))
        try:
            if self._fixed():
                return [p.parse(v) for p, v in zip(self.parsers, values)]
            return [self.parsers.parse(v) for v in values]
        except OptionException:
            raise OptionException("argument is not of the form %s"
                                  % self.get_type_str()) from None

    def to_string(self, value):
        if self._fixed():
            return self.sepchar.join(p.to_string(v) for p, v in zip(self.parsers, value))
        return self.sepchar.join(self.parsers.to_string(v) for v in value)

    def get_type_str(self):
        if self._fixed():
            return self.sepchar.join(p.get_type_str() for p in self.parsers)
        return "%s%s..." % (self.parsers.get_type_str(), self.sepchar)

    @staticmethod
    def is_type(value):
        return type(value) is list


class OptionExpression:
    """A default computed from the other options' values, e.g. "[-1] * num_gpus" or
    "[o * 10 for o in eps_w]". Evaluated by a small interpreter, not eval(): option parsers
    come back from checkpoint files, and loading one must never run code. It accepts
    literals, option names, lists, tuples, + - * / //, unary + and -, comparisons, and
    list comprehensions (one for, optional ifs); anything else raises OptionException."""

    def __init__(self, expr):
        self.expr = expr

    def __repr__(self):
        return "OptionExpression(%r)" % (self.expr,)

    def evaluate(self, options):
        """Value of the expression with options (a dict name -> value) as the names."""
        if not isinstance(self.expr, str) or len(self.expr) > _MAX_EXPR_CHARS:
            raise OptionException("expression %r: not a short string" % (self.expr,))
        try:
            tree = ast.parse(self.expr.strip(), mode="eval")
        except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
            raise OptionException("expression '%s': unable to parse: %s"
                                  % (self.expr, e)) from None
        try:
            return _ExprEvaluator(options).visit(tree.body)
        except OptionException as e:
            raise OptionException("expression '%s': %s" % (self.expr, e)) from None
        except Exception as e:
            raise OptionException("expression '%s': unable to evaluate: %s"
                                  % (self.expr, e)) from None


_MAX_EXPR_CHARS = 1000
_MAX_STEPS = 100000      # nodes visited, so that nested comprehensions cannot run for ever
_MAX_SEQ_LEN = 1000000   # longest list, tuple or string an expression may build

_BIN_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
            ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv}
_UNARY_OPS = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_CMP_OPS = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt,
            ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge}
_REFUSED = {ast.Call: "function calls", ast.Attribute: "attribute access",
            ast.Subscript: "subscripts", ast.Lambda: "lambda",
            ast.NamedExpr: "assignment", ast.Starred: "starred items"}
_SEQ = (list, tuple, str)


class _ExprEvaluator:
    def __init__(self, names):
        self.names = dict(names)
        self.steps = 0

    def refuse(self, node):
        what = _REFUSED.get(type(node), "'%s'" % type(node).__name__)
        raise OptionException("%s not allowed" % what)

    def visit(self, node):
        self.steps += 1
        if self.steps > _MAX_STEPS:
            raise OptionException("too much work")
        if isinstance(node, ast.Constant):
            if node.value is None or type(node.value) in (int, float, str, bool):
                return node.value
            self.refuse(node)
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            if node.id not in self.names:
                raise OptionException("unknown name '%s'" % node.id)
            return self.names[node.id]
        if isinstance(node, (ast.List, ast.Tuple)) and isinstance(node.ctx, ast.Load):
            items = [self.visit(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.BinOp) and type(node.op) in _BIN_OPS:
            a, b = self.visit(node.left), self.visit(node.right)
            self.check_size(node.op, a, b)
            return _BIN_OPS[type(node.op)](a, b)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY_OPS:
            return _UNARY_OPS[type(node.op)](self.visit(node.operand))
        if isinstance(node, ast.Compare) and all(type(op) in _CMP_OPS for op in node.ops):
            left = self.visit(node.left)
            for op, right_node in zip(node.ops, node.comparators):
                right = self.visit(right_node)
                if not _CMP_OPS[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.ListComp):
            return self.list_comp(node)
        if isinstance(node, (ast.BinOp, ast.UnaryOp)):
            self.refuse(node.op)  # name the operator, e.g. 'Pow'
        if isinstance(node, ast.Compare):
            self.refuse(next(op for op in node.ops if type(op) not in _CMP_OPS))
        self.refuse(node)

    @staticmethod
    def check_size(op, a, b):
        if isinstance(op, ast.Mult):
            seq, n = (a, b) if isinstance(a, _SEQ) else (b, a)
            if isinstance(seq, _SEQ) and isinstance(n, int) and len(seq) * n > _MAX_SEQ_LEN:
                raise OptionException("result too long")
        elif isinstance(op, ast.Add) and isinstance(a, _SEQ) and isinstance(b, _SEQ):
            if len(a) + len(b) > _MAX_SEQ_LEN:
                raise OptionException("result too long")

    def list_comp(self, node):
        if len(node.generators) != 1:
            raise OptionException("only one 'for' allowed in a list comprehension")
        gen = node.generators[0]
        if gen.is_async or not isinstance(gen.target, ast.Name):
            self.refuse(gen.target)
        seq = self.visit(gen.iter)
        if not isinstance(seq, _SEQ):
            raise OptionException("can only iterate over a list, tuple or string")
        saved = self.names
        out = []
        try:
            for item in seq:
                self.names = dict(saved)
                self.names[gen.target.id] = item
                if all(self.visit(cond) for cond in gen.ifs):
                    out.append(self.visit(node.elt))
        finally:
            self.names = saved
        return out


# The classes a 2012 (or our own) checkpoint's pickled OptionsParser may contain; the
# checkpoint loader maps the pickle's options.<name> to these and to nothing else.
PICKLE_CLASSES = (OptionsParser, Option, OptionExpression, OptionParser, IntegerOptionParser,
                  BooleanOptionParser, StringOptionParser, FloatOptionParser,
                  RangeOptionParser, ListOptionParser)
