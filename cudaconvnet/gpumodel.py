"""The 2012 training loop: options, data providers, train/test cycle, checkpoints, resume.

Stands for gpumodel.py (IGPUModel). Checkpoints are <save-path>/<model>__<date>/<epoch>.<batch>
pickles of {"model_state": ..., "op": OptionsParser}, written atomically; `-f DIR` resumes
from the newest one, merging its options with the new command line as 2012 did. Beyond
2012, model_state keeps the random states (the data provider's here, the engine's in
convnet.py), so that a resumed run goes on exactly as an uninterrupted one.
"""
import numbers
import os
import re
import sys
from time import asctime, localtime, strftime, time

import numpy as np

from . import options as opts
from .data import DataProvider, DataProviderException, dp_types
from .options import (BooleanOptionParser, FloatOptionParser, IntegerOptionParser, ListOptionParser,
                      OptionExpression, OptionsParser, RangeOptionParser, StringOptionParser)
from .printer import Py2Print
from .util import UnpickleError, alphanum_key, pickle, unpickle

NL = os.linesep
CHECKPOINT_RE = re.compile(r"^\d+\.\d+$")
# what util.pickle leaves behind when it is killed while writing <epoch>.<batch>
CHECKPOINT_TMP_RE = re.compile(r"^\.\d+\.\d+\.tmp-")


class ModelStateException(Exception):
    pass


class StopTraining(Exception):
    """Ends a run early with a message and an exit status (2012 called sys.exit here)."""

    def __init__(self, message="", status=1):
        super().__init__(message)
        self.message, self.status = message, status


# What a checkpoint may hold beyond plain data: the option objects, under the 2012 module
# name (options.X) and ours. Only checkpoints may: a batch file asking for them is refused.
CHECKPOINT_CLASSES = {(module, cls.__name__): cls for cls in opts.PICKLE_CLASSES
                      for module in ("options", "cudaconvnet.options")}


class IGPUModel:
    def __init__(self, model_name, op, load_dic, filename_options=None, dp_params=None, out=None):
        self.model_name = model_name
        self.op = op
        self.options = op.options
        self.load_dic = load_dic
        self.filename_options = filename_options
        self.dp_params = {} if dp_params is None else dp_params
        self.p = out or Py2Print()
        self.fill_excused_options()

        if load_dic:
            self.model_state = load_dic["model_state"]
            self.load_path = IGPUModel.checkpoint_file(self.opt("load_file"))
            # the checkpoint's folder (-f names it or a file in it); new checkpoints go there.
            # abspath first: "-f 1.2" run inside the folder names the folder ".", not ""
            folder = os.path.abspath(self.opt("load_file"))
            if not os.path.isdir(folder):
                folder = os.path.dirname(folder)
            self.save_path_override, self.save_file = os.path.split(folder)
        else:
            self.model_state = {}
            if filename_options is not None:
                self.save_file = model_name + "_" + "_".join("%s_%s" % (char, self.options[opt].get_str_value())
                                                             for opt, char in filename_options) \
                    + "_" + strftime("%Y-%m-%d_%H.%M.%S")
            self.model_state["train_outputs"] = []
            self.model_state["test_outputs"] = []
            self.model_state["epoch"] = 1
            self.model_state["batchnum"] = self.opt("train_batch_range")[0]
        self.epoch = self.model_state["epoch"]
        self.batchnum = self.model_state["batchnum"]
        self.train_outputs = self.model_state["train_outputs"]
        self.test_outputs = self.model_state["test_outputs"]

        self.init_data_providers()
        if load_dic:
            self.train_data_provider.advance_batch()
            if "dp_rng" in self.model_state:
                self.restore_provider_rng(self.model_state["dp_rng"])
        self.init_model_state()
        self.import_model()
        self.init_model_lib()

    def opt(self, name):
        return self.op.get_value(name)

    @property
    def save_path(self):
        return getattr(self, "save_path_override", None) or self.opt("save_path")

    # -- hooks the model fills in --------------------------------------------------------------
    def import_model(self):
        pass

    def init_model_lib(self):
        pass

    def init_model_state(self):
        pass

    def fill_excused_options(self):
        pass

    def init_data_providers(self):
        self.dp_params["convnet"] = self
        self.dp_params["train_batch_range"] = self.opt("train_batch_range")  # the CIFAR mean's batches
        try:
            self.test_data_provider = DataProvider.get_instance(self.opt("data_path"), self.opt("test_batch_range"),
                                                                type=self.opt("dp_type"), dp_params=self.dp_params,
                                                                test=True)
            self.train_data_provider = DataProvider.get_instance(self.opt("data_path"), self.opt("train_batch_range"),
                                                                 self.model_state["epoch"], self.model_state["batchnum"],
                                                                 type=self.opt("dp_type"), dp_params=self.dp_params,
                                                                 test=False)
        except DataProviderException as e:
            raise StopTraining("Unable to create data provider: %s" % e)

    # -- the loop ------------------------------------------------------------------------------
    def start(self):
        if self.opt("test_only"):
            self.test_outputs += [self.get_test_error()]
            self.print_test_results()
            return
        self.train()

    def train(self):
        p = self.p
        p("=========================")
        p("Training %s" % self.model_name)
        self.op.print_values()
        p("=========================")
        self.print_model_state()
        p("Running on %s" % self.device_description())
        p("Current time: %s" % asctime(localtime()))
        p("Saving checkpoints to %s" % os.path.join(self.save_path, self.save_file))
        p("=========================")
        self.check_save_folder()
        next_data = self.get_next_batch()
        # As in 2012, the loop tests the epoch of the batch just trained, so the first
        # batch of epoch num_epochs + 1 is trained too before it stops.
        while self.epoch <= self.opt("num_epochs"):
            data = next_data
            self.epoch, self.batchnum = data[0], data[1]
            self.print_iteration()
            compute_time_py = time()
            self.start_batch(data)
            next_data = self.get_next_batch()
            batch_output = self.finish_batch()
            self.train_outputs += [batch_output]
            self.print_train_results()
            if self.get_num_batches_done() % self.opt("testing_freq") == 0:
                self.sync_with_host()
                self.test_outputs += [self.get_test_error()]
                self.print_test_results()
                self.print_test_status()
                self.conditional_save()
            self.print_train_time(time() - compute_time_py)

    def check_save_folder(self):
        """Before training, not at the first checkpoint (hours later on ImageNet): the
        checkpoint folder must be one this user can make or write to. Nothing is created."""
        folder = os.path.abspath(os.path.join(self.save_path, self.save_file))
        existing = folder
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            raise StopTraining("cannot save checkpoints in '%s': '%s' is not a folder" % (folder, existing))
        if not os.access(existing, os.W_OK | os.X_OK):
            raise StopTraining("cannot save checkpoints in '%s': '%s' is not writable" % (folder, existing))

    def device_description(self):
        return "CUDA device(s) %s" % ", ".join("%d" % d for d in self.opt("gpu"))

    def sync_with_host(self):
        pass

    def print_model_state(self):
        pass

    def get_num_batches_done(self):
        r = self.opt("train_batch_range")
        return len(r) * (self.epoch - 1) + self.batchnum - r[0] + 1

    def get_next_batch(self, train=True):
        dp = self.train_data_provider if train else self.test_data_provider
        try:
            return self.parse_batch_data(dp.get_next_batch(), train=train)
        except DataProviderException as e:
            raise StopTraining(str(e))

    def parse_batch_data(self, batch_data, train=True):
        return batch_data[0], batch_data[1], batch_data[2]["data"]

    def start_batch(self, batch_data, train=True):
        raise NotImplementedError

    def finish_batch(self):
        raise NotImplementedError

    def print_iteration(self):
        self.p("\t%d.%d..." % (self.epoch, self.batchnum), comma=True)

    def print_train_time(self, compute_time_py):
        self.p("(%.3f sec)" % compute_time_py)

    def print_train_results(self):
        pass

    def print_test_results(self):
        pass

    def print_test_status(self):
        pass

    def conditional_save(self):
        self.save_state()

    def aggregate_test_outputs(self, test_outputs):
        raise NotImplementedError

    def get_test_error(self):
        next_data = self.get_next_batch(train=False)
        test_outputs = []
        r = self.opt("test_batch_range")
        while True:
            data = next_data
            self.start_batch(data, train=False)
            load_next = not self.opt("test_one") and data[1] < r[-1]
            if load_next:
                next_data = self.get_next_batch(train=False)
            test_outputs += [self.finish_batch()]
            if self.opt("test_only"):  # each batch's result, for safety
                self.p("batch %d: %s" % (data[1], self.format_batch_output(test_outputs[-1])))
            if not load_next:
                break
        return self.aggregate_test_outputs(test_outputs)

    def format_batch_output(self, output):
        return str(output)

    # -- checkpoints -------------------------------------------------------------------------------
    def next_train_batch(self, epoch, batchnum):
        """(epoch, batchnum) of the training batch after the given one (what a run resumed
        from a checkpoint of that batch trains first)."""
        r = self.opt("train_batch_range")
        i = (r.index(batchnum) + 1) % len(r) if batchnum in r else 0
        return (epoch + 1 if i == 0 else epoch), r[i]

    def restore_provider_rng(self, state):
        """The training provider's generator as it stood before the batch this resumed run
        prepares first (saved by save_state)."""
        dp = self.train_data_provider
        if getattr(dp, "rng", None) is None or not hasattr(dp, "set_rng_state"):
            return  # a provider that draws nothing (or shownet's, which prepares no batches)
        try:
            dp.set_rng_state(state)
        except (TypeError, ValueError) as e:
            raise StopTraining("the checkpoint's data provider random state does not fit this data provider: %s" % e)

    def save_state(self):
        self.model_state["epoch"], self.model_state["batchnum"] = self.epoch, self.batchnum
        # The training provider's random generator (crops, flips, colour noise) as it stood
        # before it prepared the next batch: the one the resumed run prepares first.
        dp = self.train_data_provider
        state = dp.rng_state_before(*self.next_train_batch(self.epoch, self.batchnum)) \
            if hasattr(dp, "rng_state_before") else None
        if state is not None:
            self.model_state["dp_rng"] = state
        else:
            self.model_state.pop("dp_rng", None)
        self.model_state["train_outputs"], self.model_state["test_outputs"] = self.train_outputs, self.test_outputs
        dic = {"model_state": self.model_state, "op": self.op}
        checkpoint_dir = os.path.join(self.save_path, self.save_file)
        checkpoint_file = "%d.%d" % (self.epoch, self.batchnum)
        try:
            os.makedirs(checkpoint_dir, exist_ok=True)
            pickle(os.path.join(checkpoint_dir, checkpoint_file), dic, compress=bool(self.opt("zip_save")))
        except OSError as e:  # a full disk; the previous checkpoint is still whole (atomic writes)
            raise StopTraining("cannot save checkpoint %s in '%s': %s"
                               % (checkpoint_file, checkpoint_dir, e.strerror or e)) from None
        self.prune_checkpoints(checkpoint_dir, checkpoint_file)

    def prune_checkpoints(self, checkpoint_dir, checkpoint_file):
        """--max-filesize: delete the oldest checkpoints while the folder holds more than
        that many MB (0 keeps only the newest), as 2012 did. Also deletes the partial
        files of saves that were killed half-way (never read as checkpoints)."""
        for f in os.listdir(checkpoint_dir):
            if CHECKPOINT_TMP_RE.match(f):
                try:
                    os.remove(os.path.join(checkpoint_dir, f))
                except OSError:
                    pass
        limit = self.opt("max_filesize_mb") * 1024 * 1024
        files = [f for f in os.listdir(checkpoint_dir) if CHECKPOINT_RE.match(f)]
        for f in sorted(files, key=alphanum_key):
            total = sum(os.path.getsize(os.path.join(checkpoint_dir, f2)) for f2 in os.listdir(checkpoint_dir)
                        if CHECKPOINT_RE.match(f2))
            if total > limit and f != checkpoint_file:
                os.remove(os.path.join(checkpoint_dir, f))
            else:
                break

    @staticmethod
    def checkpoint_file(load_dir):
        """The file -f means: the newest checkpoint in a folder (by epoch.batch; never a
        partial file a killed save left), or the named file."""
        if os.path.isdir(load_dir):
            files = [f for f in os.listdir(load_dir) if CHECKPOINT_RE.match(f)]
            if not files:
                raise UnpickleError("no checkpoint (a file named <epoch>.<batch>) in '%s'" % load_dir)
            return os.path.join(load_dir, sorted(files, key=alphanum_key)[-1])
        return load_dir

    @staticmethod
    def load_checkpoint(load_dir):
        """The newest complete checkpoint in a folder (by epoch.batch), or the named file."""
        load_dir = IGPUModel.checkpoint_file(load_dir)
        dic = unpickle(load_dir, extra_classes=CHECKPOINT_CLASSES)
        if not isinstance(dic, dict) or "model_state" not in dic or "op" not in dic:
            raise UnpickleError("'%s' is not a checkpoint (no model_state and op)" % load_dir)
        ms, op = dic["model_state"], dic["op"]
        if not isinstance(op, OptionsParser) or not isinstance(getattr(op, "options", None), dict):
            raise UnpickleError("'%s' is not a checkpoint: its 'op' is a %s, not the options"
                                % (load_dir, type(op).__name__))
        if not isinstance(ms, dict):
            raise UnpickleError("'%s' is not a checkpoint: its model_state is a %s, not a dict"
                                % (load_dir, type(ms).__name__))
        for key, types in (("epoch", int), ("batchnum", int), ("train_outputs", list), ("test_outputs", list)):
            if not isinstance(ms.get(key), types) or isinstance(ms.get(key), bool):
                raise UnpickleError("'%s' is damaged: model_state['%s'] is %s" % (load_dir, key, (
                    "missing" if key not in ms else "a %s" % type(ms[key]).__name__)))
        for key in ("train_outputs", "test_outputs"):
            problem = _outputs_problem(ms[key])
            if problem:
                raise UnpickleError("'%s' is damaged: model_state['%s'] %s" % (load_dir, key, problem))
        return dic

    # -- options --------------------------------------------------------------------------------------
    @staticmethod
    def get_options_parser():
        op = OptionsParser()
        op.add_option("f", "load_file", StringOptionParser, "Load file", default="", excuses=OptionsParser.EXCLUDE_ALL)
        op.add_option("train-range", "train_batch_range", RangeOptionParser, "Data batch range: training")
        op.add_option("test-range", "test_batch_range", RangeOptionParser, "Data batch range: testing")
        op.add_option("data-provider", "dp_type", StringOptionParser, "Data provider", default="default")
        op.add_option("test-freq", "testing_freq", IntegerOptionParser, "Testing frequency", default=25)
        op.add_option("epochs", "num_epochs", IntegerOptionParser, "Number of epochs", default=500)
        op.add_option("data-path", "data_path", StringOptionParser, "Data path")
        op.add_option("save-path", "save_path", StringOptionParser, "Save path")
        op.add_option("max-filesize", "max_filesize_mb", IntegerOptionParser, "Maximum save file size (MB)",
                      default=5000)
        op.add_option("max-test-err", "max_test_err", FloatOptionParser, "Maximum test error for saving")
        op.add_option("num-gpus", "num_gpus", IntegerOptionParser, "Number of GPUs", default=1)
        op.add_option("test-only", "test_only", BooleanOptionParser, "Test and quit?", default=0)
        op.add_option("zip-save", "zip_save", BooleanOptionParser, "Compress checkpoints?", default=0)
        op.add_option("test-one", "test_one", BooleanOptionParser, "Test on one batch at a time?", default=1)
        op.add_option("gpu", "gpu", ListOptionParser(IntegerOptionParser), "GPU override",
                      default=OptionExpression("[-1] * num_gpus"))
        return op

    @staticmethod
    def print_data_providers(p=print):
        p("Available data providers:")
        for dp, desc in sorted(dp_types.items()):
            p("    %s: %s" % (dp, desc))

    @staticmethod
    def check_merged_options(op, where):
        """A checkpoint's options, merged with the command line's, leave none unset (a
        damaged checkpoint may lack one the command line need not give on resume)."""
        unset = [o for o in op.get_options_list() if o.value is None and o.default is None]
        if unset:
            raise UnpickleError("'%s' is damaged: it has no value for option %s (%s)"
                                % (where, unset[0].prefixed_letter, unset[0].desc))

    @staticmethod
    def parse_options(op, argv=None):
        """Parses the command line; with -f, loads the checkpoint and merges its options
        with the new ones (a set_once option may not change). Raises StopTraining."""
        try:
            load_dic = None
            options = op.parse(argv)
            if options["load_file"].value_given:
                load_dic = IGPUModel.load_checkpoint(options["load_file"].value)
                old_op = load_dic["op"]
                old_op.merge_from(op)
                op = old_op
                IGPUModel.check_merged_options(op, options["load_file"].value)
            op.eval_expr_defaults()
            return op, load_dic
        except opts.OptionMissingException as e:
            print(e)
            op.print_usage()
            raise StopTraining("", 0 if isinstance(e, opts.OptionHelpException) else 1)
        except opts.OptionException as e:
            raise StopTraining(str(e))
        except UnpickleError as e:
            raise StopTraining("Error loading checkpoint: %s" % e)


def _outputs_problem(outputs):
    """A batch's output is (costs, numCases): costs maps each cost layer's name to its list
    of numbers, the same names and counts in every batch. What is wrong, or None."""
    first = None
    for k, out in enumerate(outputs):
        if not (isinstance(out, (tuple, list)) and len(out) == 2 and isinstance(out[0], dict)
                and isinstance(out[1], numbers.Real) and not isinstance(out[1], bool)):
            return "[%d] is not a (costs, cases) pair" % k
        costs = out[0]
        if not all(isinstance(v, (list, tuple)) and all(isinstance(x, numbers.Real) for x in v)
                   for v in costs.values()):
            return "[%d] has a cost that is not a list of numbers" % k
        shape = sorted((name, len(v)) for name, v in costs.items())
        if first is None:
            first = shape
        elif shape != first:
            return "[%d] holds the costs %s where [0] holds %s" % (k, _costs_str(shape), _costs_str(first))
    return None


def _costs_str(shape):
    return "(%s)" % ", ".join("%s: %d values" % nv for nv in shape)


def run_main(main):
    """Runs a command-line main(): one-line errors, exit statuses, no tracebacks for bad
    input; Ctrl-C stops quietly."""
    # Overflow and NaN are the training loop's to report ("^ got nan or inf!"), as on 2012's
    # GPUs, which warned of nothing: numpy's warnings would only add lines to stderr.
    np.seterr(all="ignore")
    try:
        try:
            status = main()
        except MemoryError as e:  # a net or minibatch too big for this machine
            raise StopTraining("Out of memory: %s" % (e or "MemoryError")) from None
    except StopTraining as e:
        if e.message:
            if Py2Print.line_open:  # after "1.2...", the error gets a line of its own
                print(flush=True)
            print(e.message, file=sys.stderr if e.status else sys.stdout)
        status = e.status
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        status = 130
    sys.exit(status or 0)
