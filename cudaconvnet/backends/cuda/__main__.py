"""python -m cudaconvnet.backends.cuda: pre-compiles every kernel of cuda_src/ into one cubin
per file (loader.build_all; nvcc is needed, a GPU is not). New in this port."""
import argparse
import sys

from . import loader


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m cudaconvnet.backends.cuda",
                                 description="Pre-compile every kernel of cuda_src/ into per-file cubins "
                                             "(no GPU needed), into CUDACONVNET_KERNEL_CACHE.")
    ap.add_argument("--arch", default="sm_90", help="GPU architecture, e.g. sm_90 for H100/H200 (default)")
    ap.add_argument("--jobs", type=int, default=None, help="files compiled at once (default: CPU count)")
    a = ap.parse_args(argv)
    try:
        n = loader.build_all(a.arch, a.jobs)
    except RuntimeError as e:
        print("cudaconvnet: %s" % e, file=sys.stderr)
        return 1
    print("%d bundle(s) built for %s in %s" % (n, a.arch, loader.cache_dir()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
