"""cudaconvnet: a Python 3 port of Alex Krizhevsky's 2012 cuda-convnet."""
from setuptools import find_packages, setup

setup(
    name="cudaconvnet",
    version="0.1.0",
    description="A faithful Python 3 port of cuda-convnet as it stood in 2012 (the code that trained AlexNet)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["cudaconvnet", "cudaconvnet.*"]),
    include_package_data=True,
    package_data={"": []},
    install_requires=[
        "numpy>=1.23",
        "scipy>=1.9",
        "h5py>=3.7",
        # JPEG batches (the 2012 ImageNet format) and makebatches decode and resize with Pillow.
        "pillow>=9",
        # The demo's data: the handwritten digits scikit-learn ships (no download).
        "scikit-learn>=1.1",
        # shownet's pictures (cost curves, filters, predictions), headless by default.
        "matplotlib>=3.5",
        # Progress bars for long work (makebatches, feature writing).
        "tqdm>=4.60",
    ],
    extras_require={
        "cuda": ["pycuda>=2022.1"],
        "test": ["pytest>=7"],
    },
)
