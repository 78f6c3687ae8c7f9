"""The one place that compiles cuda_src/: nvcc options, instantiation of the 2012 kernel
templates, PyCUDA's compile cache, memoised kernels.

New in this port (2012 linked one big library with every template pre-instantiated at
each launch site). A kernel is asked for by file, name and template arguments; the file is
compiled to PTX (by PyCUDA, which caches it on disk) with those instantiations forced, and
the entry point is found in the PTX by its mangled name.
"""
import hashlib
import os
import re
import shutil
import subprocess
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


def compile_ptx_with_nvcc(source, arch="sm_90"):
    """PTX from nvcc directly (no PyCUDA, no GPU): for compile checks on any machine."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise RuntimeError("nvcc is not on PATH")
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "kernels.cu")
        out = os.path.join(tmp, "kernels.ptx")
        with open(src, "w") as f:
            f.write(source)
        r = subprocess.run([nvcc, "--ptx", "-arch=%s" % arch] + nvcc_options() + ["-o", out, src],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("nvcc failed:\n%s" % r.stderr)
        with open(out) as f:
            return f.read()


@lru_cache(maxsize=None)
def kernel(filename, name, args=()):
    """The PyCUDA function for name<args> of cuda_src/filename. Compiled on first use, one
    module per specialisation (PyCUDA's disk cache makes later runs skip nvcc), memoised."""
    import pycuda.driver as drv
    from pycuda.compiler import compile as pycuda_compile
    args = tuple(args)
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
