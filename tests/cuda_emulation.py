"""Runs the kernels of cuda_src/ on the CPU, through the CUDA backend's own host code, so
that tests can check them on machines without a GPU.

How: the real .cu file is compiled by g++ (C++20) together with a small CUDA shim. A
launch runs the grid's blocks one after another (by default in blockIdx order, x fastest;
see CUDACONVNET_EMULATE_BLOCK_ORDER); each block's threads are OS threads (one
per CUDA thread) that run the kernel concurrently; __syncthreads is a barrier over the
block, __syncwarp one over the lanes of the thread's warp named in its mask (a launch in
which no barrier completes for a minute fails: a deadlock is a failed test, not a hung
run); __shared__ arrays are static locals of the kernel, filled with 0xFF bytes (NaN as
floats) before each block so that reading shared memory nobody wrote shows in the results.
The arguments are packed exactly as PyCUDA packs them (struct codes, native alignment) and
unpacked by the kernel's own parameter types, so a host-side argument list that disagrees
with the kernel signature shows up too.

What it checks: indexing, staging through shared memory, barriers, asynchronous copies
(cp.async: their groups, waits and alignment), bounds checks, the template arguments the
selectors pick and the host modules' argument lists. What it does
not: the GPU itself (warp scheduling, the memory model, timing), PyCUDA and the driver,
and the precision of the fast-math intrinsics (__expf, __logf, __powf, __fdividef, cospif
run as the host's IEEE functions here).

Used by tests/test_cuda_conv.py (the conv kernels; their host modules call `run`) and
tests/test_cuda_util_emulated.py (conv_util, layer_kernels, nvmatrix; their host modules
call nvmatrix.launch and use pycuda GPUArrays, which `emulated_backend` replaces by
FakeGPUArray over host memory).

Environment:
  CUDACONVNET_EMULATE_CFLAGS  more g++ flags, e.g. "-fsanitize=address" (run python with
                              LD_PRELOAD="$(g++ -print-file-name=libasan.so)
                              $(g++ -print-file-name=libstdc++.so)",
                              ASAN_OPTIONS=detect_leaks=0, pytest -s) to catch
                              out-of-bounds accesses, as tests/test_cuda_sanitizers.py does (and
                              "-fsanitize=thread", libtsan, for data races);
  CUDACONVNET_EMULATE_BARRIER_TIMEOUT
                              seconds without a completed barrier after which a launch
                              is failed as deadlocked (default 60);
  CUDACONVNET_EMULATE_BLOCK_ORDER
                              "forward" (default) or "reverse": the order the blocks
                              of a grid run in. On a GPU they run in any order, and at
                              once; a kernel whose results depend on it (a block that
                              overwrites another's output, or reads it) gives other
                              results in reverse, as tests/test_cuda_sanitizers.py runs them;
  CUDACONVNET_EMULATE_ASYNC_COPIES
                              when an asynchronous copy (implicit_gemm.cu's cp.async)
                              lands in shared memory: "at-wait" (default), when the
                              cp.async.wait_group that retires its group returns, the
                              latest a GPU may land it, so that a buffer read before its
                              copies were waited for holds what was there before; or
                              "at-issue", at once (the earliest) and again at its wait,
                              so that ThreadSanitizer sees a write at both ends of the
                              window in which a GPU may land it (tests/test_cuda_sanitizers.py
                              runs it so);
  CUDACONVNET_EMULATE_SRC     another cuda_src tree to emulate instead of this checkout's
                              (e.g. to compare a rewritten kernel file with its previous
                              version on the same tests).
"""
import ctypes
import hashlib
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cudaconvnet.backends.cuda import loader

EMU_CFLAGS = os.environ.get("CUDACONVNET_EMULATE_CFLAGS", "").split()
BARRIER_TIMEOUT = float(os.environ.get("CUDACONVNET_EMULATE_BARRIER_TIMEOUT", "60"))
BLOCK_ORDER = os.environ.get("CUDACONVNET_EMULATE_BLOCK_ORDER") or "forward"
assert BLOCK_ORDER in ("forward", "reverse"), "CUDACONVNET_EMULATE_BLOCK_ORDER=%s: forward or reverse" % BLOCK_ORDER
ASYNC_COPIES = os.environ.get("CUDACONVNET_EMULATE_ASYNC_COPIES") or "at-wait"
assert ASYNC_COPIES in ("at-wait", "at-issue"), "CUDACONVNET_EMULATE_ASYNC_COPIES=%s: at-wait or at-issue" % ASYNC_COPIES
EMU_SRC = Path(os.environ["CUDACONVNET_EMULATE_SRC"]) if os.environ.get("CUDACONVNET_EMULATE_SRC") else loader.CUDA_SRC

EMU_HEADER = r'''
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <tuple>
#include <vector>
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
struct uint3 { unsigned x, y, z; };
struct dim3 { unsigned x, y, z; };
struct uint2 { unsigned x, y; };
struct uint4 { unsigned x, y, z, w; };
inline uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }
struct alignas(16) float4 { float x, y, z, w; };
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
thread_local uint3 threadIdx, blockIdx;
static dim3 blockDim, gridDim;
// Barriers that give up. Waiting is an atomic wait on the barrier's generation (a futex, as
// std::barrier waits); a watchdog thread per launch (see emu_launch) marks the launch broken
// when no barrier has completed for `timeout` seconds, and wakes every waiter; a
// broken launch's threads then throw out of their barriers and the launch returns an error
// instead of hanging (a missing or divergent __syncthreads is a failed test, not a stuck run).
struct EmuBroken {};
static std::atomic<bool> emu_broken{false};
static std::atomic<unsigned long> emu_progress{0};  // barrier phases completed
struct EmuBarrier {
    std::atomic<unsigned> arrived{0}, generation{0};
    void arrive_and_wait(unsigned expected) {
        if (emu_broken) throw EmuBroken{};
        const unsigned gen = generation.load(std::memory_order_acquire);
        if (arrived.fetch_add(1, std::memory_order_acq_rel) + 1 == expected) {
            arrived.store(0, std::memory_order_relaxed);
            emu_progress.fetch_add(1, std::memory_order_relaxed);
            generation.fetch_add(1, std::memory_order_release);
            generation.notify_all();
            return;
        }
        generation.wait(gen, std::memory_order_acquire);
        if (emu_broken) throw EmuBroken{};
    }
    void wake() {
        generation.fetch_add(1, std::memory_order_release);
        generation.notify_all();
    }
};
static EmuBarrier emu_block_barrier;
static EmuBarrier emu_warp_barriers[32];
static void emu_break() {
    emu_broken = true;
    emu_block_barrier.wake();
    for (EmuBarrier& b : emu_warp_barriers) b.wake();
}
inline void __syncthreads() { emu_block_barrier.arrive_and_wait(blockDim.x * blockDim.y); }

// __syncwarp(mask): the lanes of `mask` in the caller's warp (those the block has) wait
// for each other; every lane named must call it, as on the GPU
inline void __syncwarp(unsigned mask = 0xffffffffu) {
    const unsigned threads = blockDim.x * blockDim.y;
    const unsigned warp = (threadIdx.y * blockDim.x + threadIdx.x) / 32;
    unsigned lanes = 0;
    for (unsigned l = 0; l < 32; l++) lanes += ((mask >> l) & 1u) && warp * 32 + l < threads;
    emu_warp_barriers[warp].arrive_and_wait(lanes);
}

// A fault the GPU would report or that breaks a kernel's contract, found by the emulation
// itself (not by a barrier): the first one of a launch is kept, and the launch fails with it.
static std::atomic<bool> emu_faulted{false};
static const char* emu_fault_what = nullptr;
static void emu_fault(const char* what) {
    bool no = false;
    if (emu_faulted.compare_exchange_strong(no, true)) emu_fault_what = what;
}

// cp.async (implicit_gemm.cu's asyncCopy4/16, asyncCommit, asyncWait<n>). The source is
// read when the copy is issued (global memory does not change during a launch); the copy
// lands in shared memory when the wait that retires its commit group returns, the latest
// moment a GPU may land it, and with EMU_ASYNC_AT_ISSUE 1 also at once, the earliest (so
// that ThreadSanitizer sees a write at both ends of that window). A copy must be aligned
// to its size, and every copy a thread issues must be waited for before its block ends.
#define EMU_ASYNC_COPIES
struct EmuCopy {
    void* dst;
    unsigned n;
    unsigned char data[16];
};
thread_local std::vector<EmuCopy> emu_copies_open;              // issued since the last commit
thread_local std::deque<std::vector<EmuCopy>> emu_copy_groups;  // committed, oldest first
inline void emu_async_copy(void* dst, const void* src, unsigned n) {
    if ((std::uintptr_t)dst % n != 0 || (std::uintptr_t)src % n != 0) {
        emu_fault("a cp.async whose shared or global address is not aligned to its size");
        return;
    }
    EmuCopy c{dst, n, {}};
    std::memcpy(c.data, src, n);
    if (EMU_ASYNC_AT_ISSUE) std::memcpy(dst, c.data, n);
    emu_copies_open.push_back(c);
}
inline void emu_async_commit() {
    emu_copy_groups.push_back(std::move(emu_copies_open));
    emu_copies_open.clear();
}
inline void emu_async_wait(size_t pending) {
    while (emu_copy_groups.size() > pending) {
        for (const EmuCopy& c : emu_copy_groups.front()) std::memcpy(c.dst, c.data, c.n);
        emu_copy_groups.pop_front();
    }
}
// at the end of a thread's block: no copy may be left that nobody waited for
inline void emu_async_end_block() {
    bool left = !emu_copies_open.empty();
    for (const auto& g : emu_copy_groups) left = left || !g.empty();
    if (left) emu_fault("a thread's block ended with cp.async copies it never waited for");
    emu_copies_open.clear();
    emu_copy_groups.clear();
}

// the intrinsics, at the host's IEEE precision (the GPU's approximations are not emulated);
// macros, because glibc's math.h declares functions of some of these names
inline float emu_fdividef(float a, float b) { return a / b; }
inline float emu_cospif(float a) { return (float)std::cos(3.14159265358979323846 * (double)a); }
inline int emu_float2int_rd(float a) { return (int)std::floor(a); }
#define __expf(a) expf(a)
#define __logf(a) logf(a)
#define __powf(a, b) powf(a, b)
#define __fdividef(a, b) emu_fdividef(a, b)
#define __fmul_rn(a, b) ((float)(a) * (float)(b))
#define __fadd_rn(a, b) ((float)(a) + (float)(b))
#define __int2float_rn(a) ((float)(a))
#define __float2int_rd(a) emu_float2int_rd(a)
#define cospif(a) emu_cospif(a)
'''

EMU_LAUNCH = r'''
// read one kernel argument from a buffer packed as PyCUDA packs it (native alignment)
template <typename T> static T emu_read(const char* buf, size_t& off) {
    off = (off + alignof(T) - 1) / alignof(T) * alignof(T);
    T v;
    std::memcpy(&v, buf + off, sizeof(T));
    off += sizeof(T);
    return v;
}

// the launched kernel's __shared__ arrays (found by the harness in the symbol table): filled
// with 0xFF bytes (NaN as a float, -1 as an int) before each block, so that reading shared
// memory nobody wrote shows in the results
static std::vector<std::pair<char*, size_t>> emu_shared_arrays;
extern "C" void emu_set_shared(char** ptrs, const size_t* sizes, unsigned n) {
    emu_shared_arrays.clear();
    for (unsigned i = 0; i < n; i++) emu_shared_arrays.emplace_back(ptrs[i], sizes[i]);
}

extern "C" const char* emu_fault_message() { return emu_faulted ? emu_fault_what : nullptr; }

// run every block of the grid, one after the other (last first where `reverse`); the
// block's threads run concurrently. Returns 0, 1 where a barrier gave up (see EmuBarrier),
// or 2 where the launch faulted (emu_fault_message says how).
template <typename... Ts> static int emu_launch(void (*kernel)(Ts...), unsigned gx, unsigned gy,
                                                unsigned bx, unsigned by, const char* buf, double timeout,
                                                bool reverse) {
    size_t off = 0;
    std::tuple<Ts...> args{emu_read<Ts>(buf, off)...};
    const unsigned n = bx * by;
    emu_broken = false;
    emu_faulted = false;
    emu_block_barrier.arrived = 0;
    for (EmuBarrier& b : emu_warp_barriers) b.arrived = 0;
    gridDim = {gx, gy, 1};
    blockDim = {bx, by, 1};
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < n; t++) {
        threads.emplace_back([&, t] {
            threadIdx = {t % bx, t / bx, 0};
            try {
                const unsigned long long blocks = (unsigned long long)gx * gy;
                for (unsigned long long b = 0; b < blocks; b++) {
                    const unsigned long long i = reverse ? blocks - 1 - b : b;
                    blockIdx = {(unsigned)(i % gx), (unsigned)(i / gx), 0};
                    if (t == 0) {
                        for (auto& sh : emu_shared_arrays) std::memset(sh.first, 0xFF, sh.second);
                    }
                    __syncthreads();
                    std::apply(kernel, args);
                    emu_async_end_block();
                    __syncthreads();  // the next block reuses the shared memory
                }
            } catch (EmuBroken&) {
            }
        });
    }
    std::mutex m;
    std::condition_variable finished;
    bool done = false;
    std::thread watchdog([&] {
        std::unique_lock<std::mutex> lock(m);
        unsigned long seen = emu_progress;
        auto since = std::chrono::steady_clock::now();
        while (!finished.wait_for(lock, std::chrono::milliseconds(100), [&] { return done; })) {
            const auto now = std::chrono::steady_clock::now();
            if (emu_progress != seen) {
                seen = emu_progress;
                since = now;
            } else if (std::chrono::duration<double>(now - since).count() > timeout) {
                emu_break();
                return;
            }
        }
    });
    for (auto& th : threads) th.join();
    {
        std::lock_guard<std::mutex> lock(m);
        done = true;
    }
    finished.notify_all();
    watchdog.join();
    return emu_broken ? 1 : emu_faulted ? 2 : 0;
}
'''


# ----------------------------------------------------------------------------------------
# device memory stand-ins

class FakeGPUArray:
    """What the host code uses of a pycuda GPUArray, over a host NumPy array (views too:
    slices and reshapes share the memory, as they do on the GPU)."""

    def __init__(self, a):
        self.a = a
        self.shape, self.dtype, self.strides, self.size = a.shape, a.dtype, a.strides, a.size
        self.gpudata = a.__array_interface__["data"][0]

    def get(self):
        return self.a.copy()

    def set(self, host):
        self.a[...] = np.asarray(host, dtype=self.a.dtype).reshape(self.a.shape)

    def __getitem__(self, key):
        return FakeGPUArray(self.a[key])

    def reshape(self, *shape):
        view = self.a.view()
        view.shape = shape[0] if len(shape) == 1 and isinstance(shape[0], tuple) else shape  # never copies
        return FakeGPUArray(view)


class FakeGPUArrayModule:
    """The part of pycuda.gpuarray the backend calls."""
    GPUArray = FakeGPUArray

    @staticmethod
    def empty(shape, dtype=np.float32, allocator=None):
        # filled with NaN, so that reading an output before it is written shows
        return FakeGPUArray(np.full(shape, np.nan if np.dtype(dtype).kind == "f" else -1, dtype))

    @staticmethod
    def to_gpu(host, allocator=None):
        return FakeGPUArray(np.array(host, order="C", copy=True))


class _Memcpy2D:
    def set_src_device(self, p):
        self.src = int(p)

    def set_dst_device(self, p):
        self.dst = int(p)

    def __call__(self, aligned=False):
        for r in range(self.height):
            ctypes.memmove(self.dst + r * self.dst_pitch, self.src + r * self.src_pitch, self.width_in_bytes)


class FakeDriver:
    """The part of pycuda.driver the backend calls."""
    Memcpy2D = _Memcpy2D

    @staticmethod
    def memcpy_dtod(dst, src, nbytes):
        ctypes.memmove(int(dst), int(src), int(nbytes))


# ----------------------------------------------------------------------------------------
# the emulator

class Emulator:
    """Builds kernel instantiations for the CPU and runs launches of them."""

    def __init__(self, workdir, src_root=None):
        self.workdir = Path(workdir)
        self.src_root = Path(src_root or EMU_SRC)
        self.fns = {}
        self.launches = []  # (file, kernel, template args) of every launch, in order

    def build(self, instantiations):
        """Compiles every (file, kernel, template args) not built yet, one g++ run per file."""
        by_file = {}
        for f, n, a in instantiations:
            key = (f, n, tuple(a))
            if key not in self.fns and (n, tuple(a)) not in by_file.setdefault(f, []):
                by_file[f].append((n, tuple(a)))
        for f, insts in by_file.items():
            if insts:
                self._build_file(f, insts)

    def _build_file(self, f, insts):
        src = ["#define EMU_ASYNC_AT_ISSUE %d" % (ASYNC_COPIES == "at-issue"), EMU_HEADER,
               '#include "%s"' % (self.src_root / f), EMU_LAUNCH]
        for i, (n, a) in enumerate(insts):
            src.append('extern "C" int emu_%d(unsigned gx, unsigned gy, unsigned bx, unsigned by, '
                       'const char* buf, double timeout, int reverse) '
                       '{ return emu_launch(&%s, gx, gy, bx, by, buf, timeout, reverse != 0); }'
                       % (i, loader.template_call(n, a)))
        text = "\n".join(src) + "\n"
        sources = "".join(p.read_text() for p in sorted(self.src_root.rglob("*.cu*")))
        key = hashlib.sha256((text + sources + " ".join(EMU_CFLAGS)).encode()).hexdigest()[:16]
        so = self.workdir / ("emu_%s.so" % key)
        if not so.exists():
            cpp = self.workdir / ("emu_%s.cpp" % key)
            cpp.write_text(text)
            r = subprocess.run(["g++", "-std=c++20", "-O1", "-ffp-contract=off", "-shared", "-fPIC", "-pthread",
                                "-w"] + EMU_CFLAGS + ["-I", str(self.src_root), "-o", str(so), str(cpp)],
                               capture_output=True, text=True)
            assert r.returncode == 0, "g++ failed on %s:\n%s" % (f, r.stderr[-5000:])
        lib = ctypes.CDLL(str(so))
        lib.emu_fault_message.restype = ctypes.c_char_p
        set_shared = lib.emu_set_shared
        set_shared.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t), ctypes.c_uint]
        # a kernel template's __shared__ arrays are its static locals: symbols _ZZ<kernel>E<name>
        statics = []
        for line in subprocess.run(["nm", "-D", "-S", "--defined-only", str(so)], capture_output=True,
                                   text=True, check=True).stdout.splitlines():
            parts = line.split()
            if len(parts) == 4 and parts[3].startswith("_ZZ"):
                statics.append((parts[3], int(parts[1], 16)))
        for i, (n, a) in enumerate(insts):
            fn = getattr(lib, "emu_%d" % i)
            fn.argtypes = [ctypes.c_uint] * 4 + [ctypes.c_char_p, ctypes.c_double, ctypes.c_int]
            fn.restype = ctypes.c_int
            prefix = "_ZZ%d%s%s" % (len(n), n, loader.template_fragment(a) if a else "")
            mine = [(ctypes.addressof(ctypes.c_char.in_dll(lib, sym)), size)
                    for sym, size in statics if sym.startswith(prefix)]
            self.fns[(f, n, tuple(a))] = (fn, set_shared, mine, lib)

    def _launch(self, inst, grid, block, buf):
        if inst not in self.fns:
            self.build([inst])
        (gx, gy), (bx, by, bz) = tuple(int(g) for g in grid), tuple(int(b) for b in block)
        assert bz == 1 and bx * by <= 1024, "block %s" % (block,)
        assert 1 <= gx and 1 <= gy <= 65535, "grid %s" % (grid,)
        fn, set_shared, shared, lib = self.fns[inst]
        set_shared((ctypes.c_void_p * max(1, len(shared)))(*[p for p, _ in shared]),
                   (ctypes.c_size_t * max(1, len(shared)))(*[n for _, n in shared]), len(shared))
        self.launches.append(inst)
        rc = fn(gx, gy, bx, by, buf, BARRIER_TIMEOUT, BLOCK_ORDER == "reverse")
        where = "emulated %s%s, grid %s, block %s" % (inst[1], list(inst[2]), (gx, gy), block)
        if rc == 1:
            raise AssertionError("%s: no barrier completed in %g s: threads waited at a barrier the others of their "
                                 "block or warp never reached (a missing or divergent __syncthreads/__syncwarp)"
                                 % (where, BARRIER_TIMEOUT))
        if rc == 2:
            raise AssertionError("%s: %s" % (where, lib.emu_fault_message().decode()))

    def run(self, launch, args):
        """Stands in for filter_acts.run (the conv host modules): the same launch and the
        same argument tuple of numpy scalars."""
        buf = struct.pack("".join(a.dtype.char for a in args), *[a.item() for a in args])
        self._launch(launch.instantiation, launch.grid, launch.block, buf)

    def launch(self, lc, fmt, *args):
        """Stands in for nvmatrix.launch (conv_util, layer_kernels, nvmatrix): PyCUDA's
        prepared_call packs `args` with struct format `fmt`."""
        grid = tuple(int(g) for g in lc.grid)
        if min(grid) < 1:
            return
        self._launch((lc.file, lc.kernel, tuple(lc.targs)), grid, lc.block, struct.pack(fmt, *args))

    def put(self, a):
        return FakeGPUArray(np.array(a, copy=True, order="C"))

    def get(self, d):
        return d.a.copy()


def make_emulator(workdir):
    """An Emulator working in `workdir`, or a clean pytest skip where g++ cannot build one."""
    if shutil.which("g++") is None or shutil.which("nm") is None or not sys.platform.startswith("linux"):
        pytest.skip("the CUDA emulation needs g++ (C++20) and nm on Linux")
    workdir = Path(workdir)
    probe = workdir / "probe.cpp"
    probe.write_text("#include <tuple>\nint main() { return std::apply([](int a) { return a; }, std::tuple<int>{0}); }\n")
    r = subprocess.run(["g++", "-std=c++20", "-pthread", "-o", str(workdir / "probe"), str(probe)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("the CUDA emulation needs a g++ with C++20")
    return Emulator(workdir)


def emulate_backend(monkeypatch, emulator):
    """Points the CUDA backend's host modules at `emulator` and at host-memory GPUArrays;
    returns the backend package (cudaconvnet.backends.cuda), usable as a backend."""
    import cudaconvnet.backends.cuda as cuda
    from cudaconvnet.backends.cuda import conv_util, filter_acts, img_acts, layer_kernels, nvmatrix
    from cudaconvnet.backends.cuda import cublas, sparse_acts, weight_acts
    if cuda._IMPORT_ERROR is not None:
        pytest.skip("the CUDA backend's modules do not import here: %s" % cuda._IMPORT_ERROR)
    ga, drv = FakeGPUArrayModule(), FakeDriver()
    monkeypatch.setattr(nvmatrix, "_pycuda", lambda: (ga, drv))
    monkeypatch.setattr(nvmatrix, "allocator", lambda: None)
    monkeypatch.setattr(cublas, "available", lambda: False)     # products by the emulated kSgemm
    for mod in (nvmatrix, conv_util, layer_kernels):
        monkeypatch.setattr(mod, "launch", emulator.launch)
    for mod in (filter_acts, img_acts, weight_acts, sparse_acts):
        monkeypatch.setattr(mod, "run", emulator.run)
    return cuda
