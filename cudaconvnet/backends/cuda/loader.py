"""The one place that compiles cuda_src/: nvcc options, instantiation of the 2012 kernel
templates, prebuilt kernel bundles, PyCUDA's compile cache, memoised kernels.

New in this port (2012 linked one big library with every template pre-instantiated at
each launch site). A kernel is asked for by file, name and template arguments, and found
  1. in the file's prebuilt bundle, when there is one for this source, these options and
     this GPU's architecture: one cubin per cuda_src file holding every instantiation the
     selectors can return, like 2012's library (build them with
     `python -m cudaconvnet.backends.cuda`, ahead of time or on another machine
     with the same nvcc: no GPU is needed, and loading a cubin takes milliseconds);
  2. otherwise by compiling the file with just that instantiation forced, to PTX (PyCUDA
     caches it on disk); the entry point is found in the PTX by its mangled name.
Bundles live in CUDACONVNET_KERNEL_CACHE (default ~/.cache/cudaconvnet/kernels), named
by a hash of the sources, the instantiation list, the nvcc options and the architecture,
so a stale bundle is never used: it is simply not found.
"""
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

CUDA_SRC = Path(__file__).resolve().parents[3] / "cuda_src"

# Recorded compiler options. No --use_fast_math: the kernels' own __expf/__logf/__powf
# calls are the 2012 ones, everything else is IEEE. CUDACONVNET_NVCC_OPTIONS adds to them.
NVCC_OPTIONS = ["-O3", "-std=c++14"]


def nvcc_options():
    extra = os.environ.get("CUDACONVNET_NVCC_OPTIONS", "").split()
    return NVCC_OPTIONS + ["-I" + str(CUDA_SRC)] + extra


def template_fragment(args):
    """The Itanium-mangled template argument list of `args`: ints, bools, or class names
    (str), e.g. (4, 32, True, 'MaxPooler') -> 'ILi4ELi32ELb1E9MaxPoolerE'."""
    parts = []
    for a in args:
        if isinstance(a, bool):
            parts.append("Lb%dE" % int(a))
        elif isinstance(a, int):
            parts.append("Li%sE" % (("n%d" % -a) if a < 0 else a))
        elif isinstance(a, str):
            parts.append("%d%s" % (len(a), a))
        else:
            raise TypeError("template argument %r is not an int, bool or class name" % (a,))
    return "I" + "".join(parts) + "E"


def template_call(name, args):
    """'name<4, 32, true, MaxPooler>' in C++."""
    def cxx(a):
        if isinstance(a, bool):
            return "true" if a else "false"
        return str(a)
    return "%s<%s>" % (name, ", ".join(cxx(a) for a in args)) if args else name


def build_source(filename, instantiations):
    """The text nvcc compiles: the cuda_src file, then one line per (name, args) that takes
    the kernel's address, which makes C++ instantiate that specialisation."""
    text = (CUDA_SRC / filename).read_text()
    lines = ["", "// instantiations requested by cudaconvnet.backends.cuda"]
    for i, (name, args) in enumerate(instantiations):
        lines.append("static void* cudaconvnet_instance_%d = (void*)&%s;" % (i, template_call(name, args)))
    return text + "\n".join(lines) + "\n"


def entry_name(ptx, name, args):
    """The .entry in the PTX for name<args>."""
    prefix = "_Z%d%s" % (len(name), name) + (template_fragment(args) if args else "")
    for m in re.finditer(r"\.entry\s+([A-Za-z0-9_$]+)\s*\(", ptx):
        if m.group(1).startswith(prefix) or (not args and m.group(1) == name):
            return m.group(1)
    raise LookupError("kernel %s not found in the compiled PTX" % template_call(name, args))


def _nvcc(args, source, out_suffix):
    """Runs nvcc on `source` (text) with `args`; returns the output file's bytes."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise RuntimeError("nvcc is not on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "kernels.cu")
        out = os.path.join(tmp, "kernels" + out_suffix)
        with open(src, "w") as f:
            f.write(source)
        r = subprocess.run([nvcc] + args + nvcc_options() + ["-o", out, src], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("nvcc failed:\n%s" % r.stderr)
        with open(out, "rb") as f:
            return f.read()


def compile_ptx_with_nvcc(source, arch="sm_90"):
    """PTX from nvcc directly (no PyCUDA, no GPU): for compile checks on any machine."""
    return _nvcc(["--ptx", "-arch=%s" % arch], source, ".ptx").decode()


# ------------------------------------------------------------------------------------------
# prebuilt bundles: one cubin per cuda_src file with every instantiation
# ------------------------------------------------------------------------------------------
def all_instantiations():
    """{cuda_src file: sorted [(kernel, template args)]}: everything the backend's selectors
    can return (each host module's INSTANTIATIONS)."""
    from . import (conv_gemm, conv_implicit, conv_util, conv_winograd, filter_acts, img_acts, layer_kernels, nvmatrix,
                   sparse_acts, weight_acts)
    by_file = {}
    for mod in (filter_acts, img_acts, weight_acts, sparse_acts, conv_gemm, conv_winograd, conv_implicit, conv_util,
                layer_kernels, nvmatrix):
        for f, name, args in mod.INSTANTIATIONS:
            by_file.setdefault(f, set()).add((name, tuple(args)))
    return {f: sorted(v, key=repr) for f, v in by_file.items()}


def cache_dir():
    return Path(os.environ.get("CUDACONVNET_KERNEL_CACHE") or Path.home() / ".cache" / "cudaconvnet" / "kernels")


def bundle_path(filename, instantiations, arch):
    """Where the bundle of `filename` for these instantiations and `arch` is (or would be)."""
    h = hashlib.sha256()
    # the options without the -I path, so that a bundle built in another checkout matches
    for part in [source_digest(), arch, " ".join(NVCC_OPTIONS), os.environ.get("CUDACONVNET_NVCC_OPTIONS", "")] + \
            [repr(i) for i in instantiations]:
        h.update(part.encode() + b"\0")
    stem = filename.replace("/", "-").rsplit(".", 1)[0]
    return cache_dir() / ("%s-%s-%s.cubin" % (stem, arch, h.hexdigest()[:16]))


def build_bundle(filename, instantiations, arch):
    """Compiles `filename` with every instantiation into a cubin for `arch` and writes it,
    with the list of its entry points beside it (<bundle>.entries), atomically. Returns the
    bundle's path."""
    path = bundle_path(filename, instantiations, arch)
    ptx = compile_ptx_with_nvcc(build_source(filename, instantiations), arch=arch)
    entries = [entry_name(ptx, n, a) for n, a in instantiations]
    ptxas = shutil.which("ptxas") or os.path.join(os.path.dirname(shutil.which("nvcc")), "ptxas")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        p, c, e = (os.path.join(tmp, "k" + x) for x in (".ptx", ".cubin", ".entries"))
        with open(p, "w") as f:
            f.write(ptx)
        r = subprocess.run([ptxas, "-O3", "-arch=%s" % arch, "-o", c, p], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("ptxas failed on %s:\n%s" % (filename, r.stderr))
        with open(e, "w") as f:
            f.write("".join("%r %s\n" % ((n, tuple(a)), ent) for (n, a), ent in zip(instantiations, entries)))
        os.replace(e, str(path) + ".entries")   # entries first: a cubin is only used with its list
        os.replace(c, path)
    return path


def build_all(arch, jobs=None, out=print):
    """Builds every file's bundle for `arch` (the files in parallel); skips those present."""
    todo = [(f, inst) for f, inst in sorted(all_instantiations().items()) if not bundle_path(f, inst, arch).exists()]

    def one(item):
        f, inst = item
        path = build_bundle(f, inst, arch)
        out("%-34s %4d kernels  %6.1f MB  %s" % (f, len(inst), path.stat().st_size / 1e6, path.name))
    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        list(pool.map(one, todo))
    return len(todo)


def bundles_present(arch):
    """Whether every cuda_src file has its bundle for `arch` (then no nvcc is needed)."""
    return all(bundle_path(f, inst, arch).exists() for f, inst in all_instantiations().items())


def device_arch():
    import pycuda.driver as drv
    return "sm_%d%d" % drv.Context.get_device().compute_capability()


@lru_cache(maxsize=None)
def _bundle(filename):
    """(pycuda module, {(kernel, args): entry}) of filename's prebuilt bundle for the GPU in
    use, or None when there is none."""
    import pycuda.driver as drv
    path = bundle_path(filename, all_instantiations()[filename], device_arch())
    if not path.exists():
        return None
    entries = {}
    for line in open(str(path) + ".entries"):
        key, entry = line.rsplit(" ", 1)
        entries[key] = entry.strip()
    return drv.module_from_buffer(path.read_bytes()), entries


@lru_cache(maxsize=None)
def kernel(filename, name, args=()):
    """The PyCUDA function for name<args> of cuda_src/filename: from the file's prebuilt
    bundle when there is one, else compiled on first use, one module per specialisation
    (PyCUDA's disk cache makes later runs skip nvcc). Memoised."""
    args = tuple(args)
    bundle = _bundle(filename) if filename in all_instantiations() else None
    if bundle is not None and repr((name, args)) in bundle[1]:
        return bundle[0].get_function(bundle[1][repr((name, args))])
    import pycuda.driver as drv
    from pycuda.compiler import compile as pycuda_compile
    source = build_source(filename, [(name, args)])
    ptx = pycuda_compile(source, nvcc="nvcc", options=nvcc_options(), no_extern_c=True, target="ptx")
    ptx = ptx.decode() if isinstance(ptx, bytes) else ptx
    module = drv.module_from_buffer(ptx.encode())
    return module.get_function(entry_name(ptx, name, args))


def source_digest():
    """A hash of every cuda_src file: changes whenever a kernel does."""
    h = hashlib.sha256()
    for p in sorted(CUDA_SRC.rglob("*.cu*")):
        h.update(p.read_bytes())
    return h.hexdigest()[:16]
