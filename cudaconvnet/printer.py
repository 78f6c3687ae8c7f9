"""Python 2's print statement, for printing the 2012 training output character for character.

The 2012 loop printed with `print x,` (a trailing comma), so where its lines break and where
spaces fall came from Python 2's "softspace" rule: before an item a space is written if the
previous print ended with a comma, unless what was written last ended in whitespace other
than ' '. For example 'print "logprob: ",' followed by 'print "2.3",' gives two spaces.
"""
import sys


class Py2Print:
    # whether some printer left a line on the terminal unfinished ("1.2..."), so that an
    # error printed to stderr may start a line of its own
    line_open = False

    def __init__(self, stream=None):
        self._stream = stream
        self.softspace = False

    @property
    def stream(self):
        return self._stream if self._stream is not None else sys.stdout

    def __call__(self, *items, comma=False):
        """`print a, b` is p(a, b); `print a, b,` is p(a, b, comma=True)."""
        for item in items:
            s = str(item)
            if self.softspace:
                self.stream.write(" ")
            self.stream.write(s)
            self.softspace = not (s and s[-1].isspace() and s[-1] != " ")
        if not comma:
            self.stream.write("\n")
            self.softspace = False
        Py2Print.line_open = comma
        self.stream.flush()

    def write(self, s):
        """A plain write (sys.stdout.write), which cancels a pending space as in Python 2."""
        self.stream.write(s)
        self.softspace = False
        Py2Print.line_open = not s.endswith("\n")

    def raw(self, line):
        """A line printed by the 2012 C++ module (printf, cout) into the same stdout: no space
        before it, whatever Python printed last, and Python's pending space stays pending."""
        self.stream.write(line + "\n")
        Py2Print.line_open = False
        self.stream.flush()
