"""The NumPy backend: the reference definition of every operation, on any CPU.

Each module stands for the 2012 CUDA file of the same name; see cudaconvnet.backends.
"""
from .conv_util import *  # noqa: F401,F403
from .filter_acts import convFilterActs, localFilterActs  # noqa: F401
from .img_acts import convImgActs, localImgActs  # noqa: F401
from .layer_kernels import *  # noqa: F401,F403
from .nvmatrix import *  # noqa: F401,F403
from .sparse_acts import *  # noqa: F401,F403
from .weight_acts import convWeightActs, localWeightActs  # noqa: F401

NAME = "numpy"
