"""cudaconvnet: Alex Krizhevsky's 2012 cuda-convnet, ported to Python 3.

The 2012 config format (layer.py), the option parser (options.py), the training loop
(gpumodel.py, convnet.py), the data providers (data.py, convdata.py) and shownet, over a
NumPy reference engine and a PyCUDA engine that runs the 2012 kernels. Importing this
package never imports pycuda.
"""

__version__ = "0.1.0"
