"""Tests for cudaconvnet/options.py, the 2012 option parser. The expected tables and the
Python 2 pickle below were produced by the 2012 options.py (cuda-convnet r561) run under
Python 2.7; the bold escape codes, which 2012 always printed, are stripped where noted."""

import base64
import io
import pickle
import sys

import pytest

from cudaconvnet import options as opts
from cudaconvnet.options import (
    BooleanOptionParser, FloatOptionParser, IntegerOptionParser, ListOptionParser,
    OptionException, OptionExpression, OptionHelpException, OptionMissingException,
    OptionParser, OptionsParser, RangeOptionParser, StringOptionParser, Option,
)


def small_parser():
    """The option set the embedded 2012 outputs were produced from."""
    op = OptionsParser()
    op.add_option("f", "load_file", StringOptionParser, "Load file", default="",
                  excuses=OptionsParser.EXCLUDE_ALL)
    op.add_option("train-range", "train_batch_range", RangeOptionParser,
                  "Data batch range: training")
    op.add_option("num-gpus", "num_gpus", IntegerOptionParser, "Number of GPUs", default=1)
    op.add_option("gpu", "gpu", ListOptionParser(IntegerOptionParser), "GPU override",
                  default=OptionExpression("[-1] * num_gpus"))
    op.add_option("layer-def", "layer_def", StringOptionParser, "Layer definition file",
                  set_once=True)
    op.add_option("color-noise", "color_noise", FloatOptionParser, "Color noise", default=0.0)
    op.add_option("eps", "eps", ListOptionParser([FloatOptionParser, IntegerOptionParser],
                                                 sepchar=":"), "Pair", default=[0.001, 3])
    return op


def convnet_parser():
    """The cuda-convnet r561 ConvNet option set (gpumodel.py + convnet.py)."""
    op = OptionsParser()
    S, I, B, F, R = (StringOptionParser, IntegerOptionParser, BooleanOptionParser,
                     FloatOptionParser, RangeOptionParser)
    op.add_option("f", "load_file", S, "Load file", default="", excuses=OptionsParser.EXCLUDE_ALL)
    op.add_option("train-range", "train_batch_range", R, "Data batch range: training")
    op.add_option("test-range", "test_batch_range", R, "Data batch range: testing")
    op.add_option("data-provider", "dp_type", S, "Data provider", default="default")
    op.add_option("test-freq", "testing_freq", I, "Testing frequency", default=25)
    op.add_option("epochs", "num_epochs", I, "Number of epochs", default=500)
    op.add_option("data-path", "data_path", S, "Data path")
    op.add_option("save-path", "save_path", S, "Save path")
    op.add_option("max-filesize", "max_filesize_mb", I, "Maximum save file size (MB)", default=5000)
    op.add_option("max-test-err", "max_test_err", F, "Maximum test error for saving")
    op.add_option("num-gpus", "num_gpus", I, "Number of GPUs", default=1)
    op.add_option("test-only", "test_only", B, "Test and quit?", default=0)
    op.add_option("zip-save", "zip_save", B, "Compress checkpoints?", default=0)
    op.add_option("test-one", "test_one", B, "Test on one batch at a time?", default=1)
    op.add_option("gpu", "gpu", ListOptionParser(I), "GPU override",
                  default=OptionExpression("[-1] * num_gpus"))
    op.add_option("mini", "minibatch_size", I, "Minibatch size", default=128)
    op.add_option("layer-def", "layer_def", S, "Layer definition file", set_once=True)
    op.add_option("layer-params", "layer_params", S, "Layer parameter file")
    op.add_option("check-grads", "check_grads", B, "Check gradients and quit?", default=0,
                  excuses=["data_path", "save_path", "train_batch_range", "test_batch_range"])
    op.add_option("multiview-test", "multiview_test", B, "Cropped DP: test on multiple patches?",
                  default=0, requires=["logreg_name"])
    op.add_option("crop-border", "crop_border", I, "Cropped DP: crop border size", default=4,
                  set_once=True)
    op.add_option("logreg-name", "logreg_name", S,
                  "Cropped DP: logreg layer name (for --multiview-test)", default="")
    op.add_option("conv-to-local", "conv_to_local", ListOptionParser(S),
                  "Convert given conv layers to unshared local", default=[])
    op.add_option("unshare-weights", "unshare_weights", ListOptionParser(S),
                  "Unshare weight matrices in given layers", default=[])
    op.add_option("conserve-mem", "conserve_mem", B, "Conserve GPU memory (slower)?", default=0)
    op.delete_option("max_test_err")
    op.options["max_filesize_mb"].default = 0
    op.options["testing_freq"].default = 50
    op.options["num_epochs"].default = 50000
    op.options["dp_type"].default = None
    return op


TRAIN_ARGS = ["--data-path=/d", "--save-path=/s", "--train-range=1-5", "--test-range=6",
              "--layer-def=l.cfg", "--layer-params=lp.cfg", "--data-provider=cifar"]


class TtyStringIO(io.StringIO):
    def isatty(self):
        return True


# ---------------------------------------------------------------------------------------
# Parsers

def test_integer_parser():
    assert IntegerOptionParser.parse("42") == 42
    assert IntegerOptionParser.parse("-3") == -3
    assert IntegerOptionParser.parse(" 7\t") == 7                  # Python 2 int() took ASCII spaces
    # ... and refused what Python 3's takes: underscores, digits and spaces beyond ASCII
    for bad in ["4.5", "abc", "", "1_000", "0x10", "\u0663", "\uff11\uff12", "\u20037"]:
        with pytest.raises(OptionException, match="^argument is not an integer$"):
            IntegerOptionParser.parse(bad)
    assert IntegerOptionParser.to_string(17) == "17"
    assert IntegerOptionParser.parse(IntegerOptionParser.to_string(-9)) == -9
    assert IntegerOptionParser.get_type_str() == "int"
    assert IntegerOptionParser.is_type(3) and not IntegerOptionParser.is_type(3.0)
    assert not IntegerOptionParser.is_type(True)


def test_boolean_parser():
    assert BooleanOptionParser.parse("0") == 0
    assert BooleanOptionParser.parse("1") == 1
    for bad in ["2", "-1", "yes", "True", "", "\uff11"]:
        with pytest.raises(OptionException, match="^argument is not a boolean$"):
            BooleanOptionParser.parse(bad)
    assert BooleanOptionParser.to_string(1) == "1"
    assert BooleanOptionParser.to_string(False) == "False"  # shownet's default=False prints so
    assert BooleanOptionParser.get_type_str() == "0/1"
    assert BooleanOptionParser.is_type(1) and not BooleanOptionParser.is_type(2)


def test_string_parser():
    assert StringOptionParser.parse("conv1") == "conv1"
    assert StringOptionParser.parse("") == ""
    assert StringOptionParser.to_string("a b") == "a b"
    assert StringOptionParser.get_type_str() == "string"
    assert StringOptionParser.is_type("x") and not StringOptionParser.is_type(1)


def test_float_parser():
    assert FloatOptionParser.parse("0.001") == 0.001
    assert FloatOptionParser.parse("1e-3") == 0.001
    assert FloatOptionParser.parse("-2") == -2.0
    for bad in ["abc", "", "1,5", "1_0.5", "\uff11.5"]:
        with pytest.raises(OptionException, match="^argument is not a float$"):
            FloatOptionParser.parse(bad)
    assert FloatOptionParser.to_string(0.001) == "0.001"
    assert FloatOptionParser.to_string(1 / 3) == "0.333333"
    assert FloatOptionParser.to_string(1e-7) == "1e-07"
    assert FloatOptionParser.to_string(2.0) == "2"
    assert FloatOptionParser.to_string(1234567.0) == "1.23457e+06"
    for x in [0.5, 0.0001, 25.0, -3.125]:
        assert FloatOptionParser.parse(FloatOptionParser.to_string(x)) == x
    assert FloatOptionParser.get_type_str() == "float"
    assert FloatOptionParser.is_type(1.0) and not FloatOptionParser.is_type(1)


def test_range_parser():
    assert RangeOptionParser.parse("1-5") == [1, 2, 3, 4, 5]
    assert RangeOptionParser.parse("7") == [7]
    assert RangeOptionParser.parse("3-3") == [3]
    assert RangeOptionParser.parse("1001-1001") == [1001]
    assert RangeOptionParser.to_string([1, 2, 3, 4, 5]) == "1-5"
    assert RangeOptionParser.to_string([7]) == "7-7"  # as 2012 prints a one-batch range
    for s in ["1-5", "10-391", "6-6"]:
        assert RangeOptionParser.to_string(RangeOptionParser.parse(s)) == s
    for bad in ["1-", "-", "a-b", "1-2-3", "1..5", "", "x", "5-3", "\u0663", "\u0661-\u0663"]:
        with pytest.raises(OptionException, match="^argument is neither an integer nor a range$"):
            RangeOptionParser.parse(bad)
    assert RangeOptionParser.get_type_str() == "int[-int]"
    assert RangeOptionParser.is_type([1]) and not RangeOptionParser.is_type(range(2))


def test_list_parser_homogeneous():
    p = ListOptionParser(IntegerOptionParser)
    assert p.parsers is IntegerOptionParser and p.sepchar == ","
    assert p.parse("1,2,3") == [1, 2, 3]
    assert p.parse("-1") == [-1]
    assert p.to_string([0, 1]) == "0,1"
    assert p.parse(p.to_string([4, -5, 6])) == [4, -5, 6]
    assert p.get_type_str() == "int,..."
    with pytest.raises(OptionException, match=r"^argument is not of the form int,\.\.\.$"):
        p.parse("1,x")
    s = ListOptionParser(StringOptionParser)
    assert s.parse("conv1,conv2") == ["conv1", "conv2"]
    assert s.parse("") == [""]  # 2012: an empty value is a list of one empty name
    f = ListOptionParser(FloatOptionParser, sepchar=":")
    assert f.parse("0.5:0.25") == [0.5, 0.25]
    assert f.to_string([0.5, 1e-3]) == "0.5:0.001"
    assert f.get_type_str() == "float:..."
    assert ListOptionParser.is_type([1]) and not p.is_type((1,))


def test_list_parser_per_position():
    p = ListOptionParser([FloatOptionParser, IntegerOptionParser])
    assert p.parse("0.5,3") == [0.5, 3]
    assert p.get_type_str() == "float,int"
    assert p.to_string([0.5, 3]) == "0.5,3"
    assert p.parse(p.to_string([0.125, -2])) == [0.125, -2]
    with pytest.raises(OptionException, match="^requires 2 arguments, given 3$"):
        p.parse("0.5,3,0.6")
    with pytest.raises(OptionException, match="^requires 2 arguments, given 1$"):
        p.parse("0.5")
    with pytest.raises(OptionException, match="^argument is not of the form float,int$"):
        p.parse("3,0.5")


# ---------------------------------------------------------------------------------------
# Parsing a command line

def test_parse_values_and_defaults():
    op = convnet_parser()
    ret = op.parse(TRAIN_ARGS + ["--epochs", "12", "--gpu=0,1", "--conv-to-local=conv1"])
    assert ret is op.options
    assert op.get_value("train_batch_range") == [1, 2, 3, 4, 5]
    assert op.get_value("test_batch_range") == [6]
    assert op.get_value("num_epochs") == 12
    assert op.options["num_epochs"].value_given
    assert op.get_value("minibatch_size") == 128
    assert not op.options["minibatch_size"].value_given
    assert op.get_value("gpu") == [0, 1]
    assert op.get_value("conv_to_local") == ["conv1"]
    assert op.get_value("load_file") == ""


def test_short_option_and_repeats():
    op = small_parser()
    op.parse(["-f", "/ckpt/ConvNet__x", "--num-gpus=2", "--num-gpus=3"])
    assert op.get_value("load_file") == "/ckpt/ConvNet__x"
    assert op.options["load_file"].prefixed_letter == "-f"
    assert op.get_value("num_gpus") == 3  # the last one wins, as getopt + dict in 2012


def test_parse_reads_sys_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["convnet.py", "--train-range=2-4", "--layer-def=x"])
    op = small_parser()
    op.parse(eval_expr_defaults=True)
    assert op.get_value("train_batch_range") == [2, 3, 4]
    assert op.get_value("gpu") == [-1]


def test_parse_error_message():
    op = convnet_parser()
    with pytest.raises(OptionException) as e:
        op.parse(TRAIN_ARGS + ["--epochs=many"])
    assert str(e.value) == ("Unable to parse option --epochs (Number of epochs): "
                            "argument is not an integer")
    with pytest.raises(OptionException) as e:
        small_parser().parse(["-f", "x", "--eps=1:2:3"])
    assert str(e.value) == "Unable to parse option --eps (Pair): requires 2 arguments, given 3"


def test_unknown_option_and_stray_arguments():
    op = convnet_parser()
    with pytest.raises(OptionException, match="--no-such-option") as e:
        op.parse(TRAIN_ARGS + ["--no-such-option=1"])
    assert "\n" not in str(e.value)
    with pytest.raises(OptionException, match="-q"):
        convnet_parser().parse(TRAIN_ARGS + ["-q", "1"])
    with pytest.raises(OptionException, match="--epochs requires argument"):
        convnet_parser().parse(TRAIN_ARGS + ["--epochs"])
    with pytest.raises(OptionException, match="Unexpected argument 'stray'"):
        convnet_parser().parse(TRAIN_ARGS + ["stray", "--epochs=3"])


def test_help():
    for flag in ["--help", "-h"]:
        with pytest.raises(OptionHelpException):
            convnet_parser().parse([flag])  # even with mandatory options missing
    assert issubclass(OptionHelpException, OptionMissingException)
    # an option that takes the letter itself wins
    op = OptionsParser()
    op.add_option("h", "height", IntegerOptionParser, "Height", default=1)
    op.parse(["-h", "5"])
    assert op.get_value("height") == 5


def test_missing_mandatory_option():
    op = convnet_parser()
    args = [a for a in TRAIN_ARGS if not a.startswith("--save-path")]
    with pytest.raises(OptionMissingException) as e:
        op.parse(args)
    assert str(e.value) == "Option --save-path (Save path) not supplied"
    # the first missing option in definition order is the one reported
    with pytest.raises(OptionMissingException) as e:
        convnet_parser().parse([])
    assert str(e.value) == "Option --train-range (Data batch range: training) not supplied"


def test_excuses_all():
    op = convnet_parser()
    op.parse(["-f", "/ckpt"])  # -f excuses every mandatory option
    assert op.get_value("load_file") == "/ckpt"
    assert op.get_value("data_path") is None
    assert op.get_value("train_batch_range") is None
    assert op.get_value("num_epochs") == 50000


def test_excuses_list():
    op = convnet_parser()
    op.parse(["--check-grads=1", "--layer-def=l.cfg", "--layer-params=p.cfg",
              "--data-provider=dp"])
    assert op.get_value("check_grads") == 1
    assert op.get_value("save_path") is None
    # check-grads excuses the data options, not the layer files
    with pytest.raises(OptionMissingException, match=r"^Option --layer-params \(Layer"):
        convnet_parser().parse(["--check-grads=1", "--layer-def=l.cfg", "--data-provider=dp"])
    # an excusing option excuses when given, whatever its value (2012) ...
    convnet_parser().parse(["--check-grads=0", "--layer-def=l.cfg", "--layer-params=p",
                            "--data-provider=dp"])
    # ... and excuses nothing when not given
    with pytest.raises(OptionMissingException, match="--train-range"):
        convnet_parser().parse(["--layer-def=l.cfg", "--layer-params=p", "--data-provider=dp"])


def test_requires():
    with pytest.raises(OptionMissingException) as e:
        convnet_parser().parse(TRAIN_ARGS + ["--multiview-test=1"])
    assert str(e.value) == ("Option --multiview-test (Cropped DP: test on multiple patches?) "
                            "requires option --logreg-name "
                            "(Cropped DP: logreg layer name (for --multiview-test))")
    op = convnet_parser()
    op.parse(TRAIN_ARGS + ["--multiview-test=1", "--logreg-name=logprob"])
    assert op.get_value("multiview_test") == 1
    # requires names options by name: shownet's requires=['feature-path'] (a letter) names
    # no option, so it is never enforced, as in 2012
    op = OptionsParser()
    op.add_option("write-features", "write_features", StringOptionParser, "W", default="",
                  requires=["feature-path"])
    op.add_option("feature-path", "feature_path", StringOptionParser, "P", default="")
    op.parse(["--write-features=fc10"])
    assert op.get_value("write_features") == "fc10"
    op.options["write_features"].requires = ["feature_path"]
    with pytest.raises(OptionMissingException, match="requires option --feature-path"):
        op.parse(["--write-features=fc10"])


# ---------------------------------------------------------------------------------------
# Expression defaults

def test_expression_default_gpu():
    op = convnet_parser()
    op.parse(TRAIN_ARGS + ["--num-gpus=2"])
    assert isinstance(op.get_value("gpu"), OptionExpression)  # left alone until asked
    op.eval_expr_defaults()
    assert op.get_value("gpu") == [-1, -1]
    assert not op.options["gpu"].value_given
    op = convnet_parser()
    op.parse(TRAIN_ARGS + ["--num-gpus=2", "--gpu=3"], eval_expr_defaults=True)
    assert op.get_value("gpu") == [3]  # a given value is not replaced


@pytest.mark.parametrize("expr, env, want", [
    ("[-1] * num_gpus", {"num_gpus": 3}, [-1, -1, -1]),
    ("num_gpus * [-1]", {"num_gpus": 1}, [-1]),
    ("eps_w * 10", {"eps_w": 0.5}, 5.0),
    ("[o * 10 for o in eps_w]", {"eps_w": [0.1, 0.5]}, [1.0, 5.0]),
    ("[o for o in eps_w if o > 0]", {"eps_w": [0.1, 0, 2]}, [0.1, 2]),
    ("(a + b) // 2 - -c", {"a": 3, "b": 4, "c": 1}, 4),
    ("a / 4", {"a": 2}, 0.5),
    ("[a, (b, 'x'), None, True]", {"a": 1, "b": 2.5}, [1, (2.5, "x"), None, True]),
    ("1 < a <= 3", {"a": 3}, True),
    ("a == b", {"a": [1], "b": [2]}, False),
    ("+a - 1e-3", {"a": 1}, 0.999),
])
def test_expression_grammar(expr, env, want):
    assert OptionExpression(expr).evaluate(env) == want


@pytest.mark.parametrize("expr, why", [
    ("__import__('os').system('echo pwned')", "function calls not allowed"),
    ("len(eps_w)", "function calls not allowed"),
    ("num_gpus.real", "attribute access not allowed"),
    ("().__class__.__bases__", "attribute access not allowed"),
    ("eps_w[0]", "subscripts not allowed"),
    ("(lambda: 1)()", "function calls not allowed"),
    ("lambda: 1", "lambda not allowed"),
    ("2 ** 10", "'Pow' not allowed"),
    ("{'a': 1}", "'Dict' not allowed"),
    ("-~a", "'Invert' not allowed"),
    ("a in eps_w", "'In' not allowed"),
    ("a is b", "'Is' not allowed"),
    ("a if a else b", "'IfExp' not allowed"),
    ("a and b", "'BoolOp' not allowed"),
    ("(x := 1)", "assignment not allowed"),
    ("[*eps_w]", "starred items not allowed"),
    ("f'{eps_w}'", "'JoinedStr' not allowed"),
    ("b'x'", "not allowed"),
    ("[o for o in eps_w for p in eps_w]", "only one 'for'"),
    ("undefined_name * 2", "unknown name 'undefined_name'"),
    ("[0] * 100000000", "result too long"),
    ("'x' * 10000000", "result too long"),
    ("[[o for o in r] for p in r]", "too much work"),
    ("1 +", "unable to parse"),
    ("num_gpus / 0", "unable to evaluate: division by zero"),
])
def test_expression_refused(expr, why):
    env = {"eps_w": [0.1], "num_gpus": 1, "a": 1, "b": 2, "r": [0] * 1000}
    with pytest.raises(OptionException) as e:
        OptionExpression(expr).evaluate(env)
    assert why in str(e.value)
    assert str(e.value).startswith("expression ")


def test_expression_error_through_parser():
    op = small_parser()
    op.options["gpu"].default = OptionExpression("__import__('os').getcwd()")
    op.parse(["-f", "x"])
    with pytest.raises(OptionException) as e:
        op.eval_expr_defaults()
    assert str(e.value) == (
        "Unable to set default value for option --gpu (GPU override): expression "
        "'__import__('os').getcwd()': function calls not allowed")


def test_expression_wrong_type():
    op = small_parser()
    op.options["gpu"].default = OptionExpression("num_gpus * 2")
    op.parse(["-f", "x"])
    with pytest.raises(OptionException) as e:
        op.eval_expr_defaults()
    assert str(e.value) == ("Unable to set default value for option --gpu (GPU override): "
                            "expression result 2 is not of right type (int,...)")


def test_expressions_see_values_before_evaluation():
    op = OptionsParser()
    op.add_option("a", "a", IntegerOptionParser, "A", default=2)
    op.add_option("b", "b", IntegerOptionParser, "B", default=OptionExpression("a * 3"))
    op.add_option("c", "c", IntegerOptionParser, "C", default=OptionExpression("a + 1"))
    op.parse(["-a", "5"], eval_expr_defaults=True)
    assert (op.get_value("b"), op.get_value("c")) == (15, 6)


# ---------------------------------------------------------------------------------------
# Resume: merge_from

def test_merge_set_once_raises():
    old = convnet_parser()
    old.parse(TRAIN_ARGS)
    new = convnet_parser()
    new.parse(["-f", "/ckpt", "--layer-def=other.cfg"])
    with pytest.raises(OptionException) as e:
        old.merge_from(new)
    assert str(e.value) == "Option --layer-def (Layer definition file) cannot be changed"
    new = convnet_parser()
    new.parse(["-f", "/ckpt", "--crop-border=4"])  # given at all, even unchanged
    with pytest.raises(OptionException, match=r"^Option --crop-border .* cannot be changed$"):
        old.merge_from(new)


def test_merge_semantics():
    old = convnet_parser()
    old.parse(TRAIN_ARGS + ["--epochs=10", "--mini=64", "--num-gpus=2"])
    old.eval_expr_defaults()
    old.options["max_filesize_mb"].save = True
    new = convnet_parser()
    new.add_option("only-new", "only_new", IntegerOptionParser, "Only in the new", default=7)
    new.add_option("unsaved", "unsaved", IntegerOptionParser, "Never saved", default=3,
                   save=False)
    old.add_option("unsaved", "unsaved", IntegerOptionParser, "Never saved", default=9,
                   save=False)
    old.set_value("unsaved", "99")
    old.add_option("only-old", "only_old", IntegerOptionParser, "Only in the old", default=1)
    old.set_value("only_old", "1")
    new.parse(["-f", "/ckpt", "--epochs=20", "--layer-params=new.cfg"])
    old.merge_from(new)
    assert old.get_value("num_epochs") == 20           # given again: replaced
    assert old.get_value("layer_params") == "new.cfg"
    assert old.options["num_epochs"] is new.options["num_epochs"]
    assert old.get_value("minibatch_size") == 64       # new default does not override
    assert old.get_value("train_batch_range") == [1, 2, 3, 4, 5]
    assert old.get_value("load_file") == "/ckpt"
    assert old.get_value("only_new") == 7              # added
    assert old.get_value("only_old") == 1              # kept
    assert old.get_value("unsaved") == 3               # save=False: the new one always wins
    old.eval_expr_defaults()
    assert old.get_value("gpu") == [-1, -1]            # already evaluated from num_gpus=2


def test_merge_new_gpu_expression_reevaluated():
    old = small_parser()
    old.parse(["--train-range=1-2", "--layer-def=l"])
    new = small_parser()
    new.parse(["-f", "c", "--num-gpus=2"])
    old.merge_from(new)
    old.eval_expr_defaults()
    assert old.get_value("gpu") == [-1, -1]


# ---------------------------------------------------------------------------------------
# Other methods

def test_get_options_list_orders():
    op = OptionsParser()
    op.add_option("zeta", "z", IntegerOptionParser, "A first", default=1)
    op.add_option("b", "expr", IntegerOptionParser, "C third", default=OptionExpression("z"))
    op.add_option("alpha", "a", IntegerOptionParser, "B second", default=2)
    names = lambda order: [o.name for o in op.get_options_list(order)]
    assert names(OptionsParser.SORT_LETTER) == ["a", "expr", "z"]
    assert names(OptionsParser.SORT_DESC) == ["z", "a", "expr"]
    assert names(OptionsParser.SORT_EXPR_LAST) == ["z", "a", "expr"]
    assert [o.name for o in op.get_options_list()] == names(OptionsParser.SORT_LETTER)


def test_convnet_names_the_missing_option_2012_named():
    """With several mandatory options left out, the one 2012 named (the AlexNet code's and
    cuda-convnet's convnet.py run under Python 2.7, their dict order): each line below gives
    one more option and the next one named."""
    from cudaconvnet.convnet import ConvNet
    given = ["--train-range=1", "--test-range=2"]
    named = ["--save-path", "--layer-params", "--layer-def", "--data-path", "--data-provider"]
    values = ["--save-path=s", "--layer-params=p", "--layer-def=d", "--data-path=x", "--data-provider=cifar"]
    assert _missing(ConvNet.get_options_parser(), []) == "--train-range"
    assert _missing(ConvNet.get_options_parser(), ["--test-range=2"]) == "--train-range"
    assert _missing(ConvNet.get_options_parser(), ["--train-range=1"]) == "--test-range"
    for name, value in zip(named, values):
        assert _missing(ConvNet.get_options_parser(), given) == name
        given.append(value)
    ConvNet.get_options_parser().parse(given)


# The defaults convnet.py ran with in 2012 (both codes: gpumodel.py's options, then
# convnet.py's own and its overrides, cc:convnet.py:175-190, chm:convnet.py:177-197).
DEFAULTS_2012 = {
    "minibatch_size": 128, "check_grads": 0, "multiview_test": 0, "crop_border": 4, "logreg_name": "",
    "conv_to_local": [], "unshare_weights": [], "conserve_mem": 0, "color_noise": 0.0, "test_out": "",
    "pca_noise": 0.0, "scalar_mean": False, "wupdate_freq": 1, "load_file": "", "dp_type": None,
    "testing_freq": 50, "num_epochs": 50000, "max_filesize_mb": 0, "num_gpus": 1, "test_only": 0,
    "zip_save": 0, "test_one": 1,
}


def test_convnet_defaults_are_2012s():
    from cudaconvnet.convnet import ConvNet
    op = ConvNet.get_options_parser()
    assert {k: op.options[k].default for k in DEFAULTS_2012} == DEFAULTS_2012
    assert "max_test_err" not in op.options  # deleted by convnet.py in both codes


def _missing(op, argv):
    with pytest.raises(OptionMissingException) as ei:
        op.parse(argv)
    return str(ei.value).split()[1]


def test_get_set_delete_add():
    op = small_parser()
    op.set_value("train_batch_range", "0")
    assert op.get_value("train_batch_range") == [0]
    assert op.options["train_batch_range"].value_given
    op.set_value("gpu", [], parse=False)
    assert op.get_value("gpu") == []
    with pytest.raises(OptionException, match="Unable to parse option --num-gpus"):
        op.set_value("num_gpus", "two")
    op.delete_option("eps")
    op.delete_option("not_there")
    assert "eps" not in op.options
    with pytest.raises(OptionException, match="defined twice"):
        op.add_option("x", "gpu", IntegerOptionParser, "again")
    op.add_option("y", "y", IntegerOptionParser, "Y", requires="gpu", excuses="gpu")
    assert op.options["y"].requires == ["gpu"] and op.options["y"].excuses == ["gpu"]
    o = op.options["layer_def"]
    assert (o.letter, o.name, o.desc, o.parser, o.set_once, o.default, o.excuses,
            o.requires, o.save, o.value, o.value_given, o.prefixed_letter) == (
        "layer-def", "layer_def", "Layer definition file", StringOptionParser, True, None,
        [], [], True, None, False, "--layer-def")
    assert op.options["load_file"].excuses == OptionsParser.EXCLUDE_ALL == "all"


def test_all_values_given():
    op = small_parser()
    op.parse(["--train-range=1", "--layer-def=x"])
    assert op.all_values_given() is False   # no option that has a default was given
    op = small_parser()
    op.parse(["--train-range=1", "--layer-def=x", "--num-gpus=1"])
    assert op.all_values_given() is True


def test_get_str_value():
    op = small_parser()
    op.parse(["--train-range=3", "--layer-def=x"])
    assert op.options["gpu"].get_str_value() == "[-1] * num_gpus"
    assert op.options["gpu"].get_str_value(get_default_str=True) == "[-1] * num_gpus"
    assert op.options["train_batch_range"].get_str_value() == "3-3"
    assert op.options["train_batch_range"].get_str_value(get_default_str=True) == ""
    assert op.options["eps"].get_str_value() == "0.001:3"


# ---------------------------------------------------------------------------------------
# Printing

# 2012 print_values of small_parser() after
#   convnet.py --train-range=1-3 --layer-def=layers.cfg --color-noise=0.25 ; eval_expr_defaults
# Note the value column is padded to the longest *default* value only, and given values end
# with one trailing space.
EXPECTED_VALUES_2012 = [
    "Color noise               : 0.25    ",
    "Data batch range: training: 1-3     ",
    "GPU override              : -1      [DEFAULT]",
    "Layer definition file     : layers.cfg ",
    "Load file                 :         [DEFAULT]",
    "Number of GPUs            : 1       [DEFAULT]",
    "Pair                      : 0.001:3 [DEFAULT]",
]

# 2012 print_usage of small_parser(), program convnet.py, bold codes stripped.
EXPECTED_USAGE_2012 = [
    "convnet.py usage:",
    "    Option                        Description                Default           ",
    "    [--color-noise <float>    ] - Color noise                [0]               ",
    "    [--eps <float:int>        ] - Pair                       [0.001:3]         ",
    "    [-f <string>              ] - Load file                  []                ",
    "    [--gpu <int,...>          ] - GPU override               [[-1] * num_gpus] ",
    "    [--num-gpus <int>         ] - Number of GPUs             [1]               ",
    "     --layer-def <string>       - Layer definition file                        ",
    "     --train-range <int[-int]>  - Data batch range: training                   ",
]

# The same as a terminal saw it.
EXPECTED_USAGE_2012_TTY_HEAD = [
    "convnet.py usage:",
    "\x1b[1m    Option                       \x1b[0m \x1b[1mDescription               \x1b[0m "
    "\x1b[1mDefault          \x1b[0m ",
    "    [\x1b[1m--color-noise\x1b[0m <float>    ] - Color noise                [0]"
    "               ",
]


def test_print_values_2012_format(capsys):
    op = small_parser()
    op.parse(["--train-range=1-3", "--layer-def=layers.cfg", "--color-noise=0.25"])
    op.eval_expr_defaults()
    capsys.readouterr()
    op.print_values()
    assert capsys.readouterr().out.split("\n") == EXPECTED_VALUES_2012 + [""]


def test_print_values_before_expression_evaluation(capsys):
    op = small_parser()
    op.parse(["--train-range=2", "--layer-def=l"])
    op.print_values()
    lines = capsys.readouterr().out.splitlines()
    assert "GPU override              : [-1] * num_gpus [DEFAULT]" in lines
    assert "Data batch range: training: 2-2             " in lines


def test_print_values_no_defaults(capsys):
    op = OptionsParser()
    op.add_option("a", "a", IntegerOptionParser, "Alpha")
    op.add_option("bb", "b", StringOptionParser, "Be")
    op.parse(["-a", "1", "--bb=xyz"])
    op.print_values()  # 2012 failed here: max() of no defaults
    assert capsys.readouterr().out == "Alpha: 1 \nBe   : xyz \n"


def test_print_usage_2012_format(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/path/to/convnet.py"])
    small_parser().print_usage()
    assert capsys.readouterr().out.split("\n") == EXPECTED_USAGE_2012 + [""]


def test_print_usage_bold_on_tty(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["convnet.py"])
    buf = TtyStringIO()
    monkeypatch.setattr(sys, "stdout", buf)
    small_parser().print_usage()
    lines = buf.getvalue().split("\n")
    assert lines[:3] == EXPECTED_USAGE_2012_TTY_HEAD
    stripped = [ln.replace("\x1b[1m", "").replace("\x1b[0m", "") for ln in lines]
    assert stripped == EXPECTED_USAGE_2012 + [""]


def test_print_usage_lists_every_option(capsys):
    op = convnet_parser()
    op.print_usage()
    out = capsys.readouterr().out
    for o in op.options.values():
        assert o.prefixed_letter + " <" in out
        assert o.desc in out
    assert "\x1b[" not in out  # not a terminal: no escape codes


def test_print_usage_constraints(capsys):
    convnet_parser().print_usage(print_constraints=True)  # 2012 raised IndexError here
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["Option", "Description", "Default", "Excused", "by",
                                "Requires"]
    mv = [ln for ln in lines if "--multiview-test" in ln and "<0/1>" in ln][0]
    assert mv.endswith(" --logreg-name")
    dp = [ln for ln in lines if "--data-path <string>" in ln][0]
    assert dp.rstrip().endswith("--check-grads, -f")
    lp = [ln for ln in lines if "--layer-params <string>" in ln][0]
    assert lp.rstrip().endswith(" -f")


def test_static_helpers(monkeypatch):
    assert OptionsParser._longest_value(["a", "abc", "ab"]) == 3
    assert OptionsParser._longest_value([("x", None), ("y", "zz")], key=lambda t: t[1]) == 2
    assert OptionsParser._longest_value([]) == 0
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert OptionsParser._bold("x") == "x"
    monkeypatch.setattr(sys, "stdout", TtyStringIO())
    assert OptionsParser._bold("x") == "\x1b[1mx\x1b[0m"


# ---------------------------------------------------------------------------------------
# Checkpoints: objects rebuilt from their state

def _rebuild(obj, memo):
    """A copy of obj made the way an unpickler makes one: cls.__new__ + __dict__ update."""
    if id(obj) in memo:
        return memo[id(obj)]
    if isinstance(obj, list):
        out = memo[id(obj)] = []
        out.extend(_rebuild(x, memo) for x in obj)
        return out
    if isinstance(obj, dict):
        out = memo[id(obj)] = {}
        out.update((k, _rebuild(v, memo)) for k, v in obj.items())
        return out
    if isinstance(obj, type) or not hasattr(obj, "__dict__"):
        return obj
    cls = obj.__class__
    assert cls in opts.PICKLE_CLASSES
    out = memo[id(obj)] = cls.__new__(cls)
    out.__dict__.update({k: _rebuild(v, memo) for k, v in obj.__dict__.items()})
    return out


def test_state_dict_round_trip(capsys):
    op = convnet_parser()
    op.parse(TRAIN_ARGS + ["--num-gpus=2", "--conv-to-local=c1,c2"])
    op.eval_expr_defaults()
    copy = _rebuild(op, {})
    assert copy is not op and copy.options["gpu"] is not op.options["gpu"]
    assert copy.options["gpu"].parser.parsers is IntegerOptionParser
    op.print_values()
    before = capsys.readouterr().out
    copy.print_values()
    assert capsys.readouterr().out == before
    # the rebuilt parser still parses, evaluates and merges
    fresh = _rebuild(convnet_parser(), {})
    fresh.parse(["-f", "/ckpt", "--epochs=3", "--num-gpus=3"], eval_expr_defaults=True)
    assert fresh.get_value("gpu") == [-1, -1, -1]
    copy.merge_from(fresh)
    assert copy.get_value("num_epochs") == 3
    assert copy.get_value("conv_to_local") == ["c1", "c2"]
    copy.print_usage()
    assert "--unshare-weights <string,...>" in capsys.readouterr().out


def test_python3_pickle_round_trip():
    op = small_parser()
    op.parse(["--train-range=4-6", "--layer-def=l.cfg", "--num-gpus=2"], eval_expr_defaults=True)
    back = pickle.loads(pickle.dumps({"op": op}, protocol=2))["op"]
    assert back.get_value("gpu") == [-1, -1]
    assert back.options["eps"].parser.parsers == [FloatOptionParser, IntegerOptionParser]


# {'op': small_parser()} after
#   convnet.py --train-range=1-3 --layer-def=layers.cfg --color-noise=0.25 ; eval_expr_defaults
# pickled by the 2012 options.py under Python 2.7 with cPickle protocol 2, as gpumodel.py did.
PY2_PICKLE = base64.b64decode(
    "gAJ9cQFVAm9wcQIoY29wdGlvbnMKT3B0aW9uc1BhcnNlcgpxA29xBH1xBVUHb3B0aW9uc3EGfXEHKFUIbnVtX2dw"
    "dXNxCChjb3B0aW9ucwpPcHRpb24KcQlvfXEKKFUEbmFtZXELaAhVC3ZhbHVlX2dpdmVucQyJVQ9wcmVmaXhlZF9s"
    "ZXR0ZXJxDVUKLS1udW0tZ3B1c1UHZGVmYXVsdHEOSwFVBnBhcnNlcnEPY29wdGlvbnMKSW50ZWdlck9wdGlvblBh"
    "cnNlcgpxEFUIc2V0X29uY2VxEYlVBXZhbHVlcRJLAVUHZXhjdXNlc3ETXXEUVQZsZXR0ZXJxFVUIbnVtLWdwdXNx"
    "FlUEc2F2ZXEXiFUIcmVxdWlyZXNxGF1xGVUEZGVzY3EaVQ5OdW1iZXIgb2YgR1BVc3EbdWJVA2Vwc3EcKGgJb31x"
    "HShoC2gcaAyJaA1VBS0tZXBzaA5dcR4oRz9QYk3S8an8SwNlaA8oY29wdGlvbnMKTGlzdE9wdGlvblBhcnNlcgpx"
    "H299cSAoVQdwYXJzZXJzcSFdcSIoY29wdGlvbnMKRmxvYXRPcHRpb25QYXJzZXIKcSNoEGVVB3NlcGNoYXJxJFUB"
    "OnViaBGJaBJoHmgTaBRoFWgcaBeIaBhoGWgaVQRQYWlycSV1YlUJbGF5ZXJfZGVmcSYoaAlvfXEnKGgLaCZoDIho"
    "DVULLS1sYXllci1kZWZoDk5oD2NvcHRpb25zClN0cmluZ09wdGlvblBhcnNlcgpxKGgRiGgSVQpsYXllcnMuY2Zn"
    "aBNoFGgVVQlsYXllci1kZWZxKWgXiGgYaBloGlUVTGF5ZXIgZGVmaW5pdGlvbiBmaWxlcSp1YlURdHJhaW5fYmF0"
    "Y2hfcmFuZ2VxKyhoCW99cSwoaAtoK2gMiGgNVQ0tLXRyYWluLXJhbmdlaA5OaA9jb3B0aW9ucwpSYW5nZU9wdGlv"
    "blBhcnNlcgpxLWgRiWgSXXEuKEsBSwJLA2VoE2gUaBVVC3RyYWluLXJhbmdlcS9oF4hoGGgZaBpVGkRhdGEgYmF0"
    "Y2ggcmFuZ2U6IHRyYWluaW5ncTB1YlULY29sb3Jfbm9pc2VxMShoCW99cTIoaAtoMWgMiGgNVQ0tLWNvbG9yLW5v"
    "aXNlaA5HAAAAAAAAAABoD2gjaBGJaBJHP9AAAAAAAABoE2gUaBVVC2NvbG9yLW5vaXNlcTNoF4hoGGgZaBpVC0Nv"
    "bG9yIG5vaXNlcTR1YlUDZ3B1cTUoaAlvfXE2KGgLaDVoDIloDVUFLS1ncHVoDihjb3B0aW9ucwpPcHRpb25FeHBy"
    "ZXNzaW9uCnE3b31xOFUEZXhwcnE5VQ9bLTFdICogbnVtX2dwdXNxOnNiaA8oaB9vfXE7KGghaBBoJFUBLHViaBGJ"
    "aBJdcTxK/////2FoE2gUaBVoNWgXiGgYaBloGlUMR1BVIG92ZXJyaWRlcT11YlUJbG9hZF9maWxlcT4oaAlvfXE/"
    "KGgLaD5oDIloDVUCLWZoDlUAaA9oKGgRiWgSVQBoE1UDYWxscUBoFVUBZmgXiGgYaBloGlUJTG9hZCBmaWxlcUF1"
    "YnVzYnMu")


class _OptionsOnlyUnpickler(pickle.Unpickler):
    """Stands in for the project's checkpoint unpickler: options.X -> cudaconvnet.options.X."""
    classes = {c.__name__: c for c in opts.PICKLE_CLASSES}

    def find_class(self, module, name):
        if module == "options" and name in self.classes:
            return self.classes[name]
        raise pickle.UnpicklingError("refused %s.%s" % (module, name))


def test_python2_checkpoint_options(capsys):
    op = _OptionsOnlyUnpickler(io.BytesIO(PY2_PICKLE), encoding="latin1").load()["op"]
    assert isinstance(op, OptionsParser)
    assert all(isinstance(o, Option) for o in op.options.values())
    assert op.options["num_gpus"].parser is IntegerOptionParser
    gpu = op.options["gpu"]
    assert isinstance(gpu.parser, ListOptionParser) and gpu.parser.parsers is IntegerOptionParser
    assert isinstance(gpu.default, OptionExpression) and gpu.default.expr == "[-1] * num_gpus"
    assert gpu.value == [-1]
    assert op.options["eps"].parser.sepchar == ":"
    assert op.get_value("train_batch_range") == [1, 2, 3]
    op.print_values()
    assert capsys.readouterr().out.split("\n") == EXPECTED_VALUES_2012 + [""]

    # resume: python convnet.py -f <ckpt> --num-gpus=2 --train-range=4-5
    new = small_parser()
    new.parse(["-f", "/ckpt", "--num-gpus=2", "--train-range=4-5"])
    op.merge_from(new)
    op.eval_expr_defaults()
    assert op.get_value("num_gpus") == 2
    assert op.get_value("gpu") == [-1, -1]
    assert op.get_value("train_batch_range") == [4, 5]
    assert op.get_value("layer_def") == "layers.cfg"
    assert op.get_value("color_noise") == 0.25
    # and it goes back to a checkpoint of ours
    again = pickle.loads(pickle.dumps(op, protocol=pickle.HIGHEST_PROTOCOL))
    assert again.get_value("gpu") == [-1, -1]

    bad = small_parser()
    bad.parse(["-f", "/ckpt", "--layer-def=other.cfg"])
    op2 = _OptionsOnlyUnpickler(io.BytesIO(PY2_PICKLE), encoding="latin1").load()["op"]
    with pytest.raises(OptionException, match="cannot be changed"):
        op2.merge_from(bad)


def test_pickle_classes():
    assert set(opts.PICKLE_CLASSES) == {
        OptionsParser, Option, OptionExpression, OptionParser, IntegerOptionParser,
        BooleanOptionParser, StringOptionParser, FloatOptionParser, RangeOptionParser,
        ListOptionParser}
    assert all(c.__module__ == "cudaconvnet.options" for c in opts.PICKLE_CLASSES)
    # none may need __init__ to run to be usable
    for c in opts.PICKLE_CLASSES:
        assert not hasattr(c, "__getinitargs__") and not hasattr(c, "__setstate__")
