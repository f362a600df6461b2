from setuptools import find_packages, setup

setup(
    name="lmc_jax",
    version="0.1.0",
    description="Train zoos of networks at once, align them by permutation, and measure "
                "linear mode connectivity along every line between them.",
    # Only lmc_jax is installed: a top-level `experiments` package would clash with others of
    # that name. `python -m experiments.<name>` works from a checkout; installed, the same
    # entry points are the console scripts below (or `python -m lmc_jax.cli.<name>`).
    packages=find_packages(include=["lmc_jax", "lmc_jax.*"]),
    # The CPU convolution's source: compiled on first use (lmc_jax/nn/native_conv.py).
    package_data={"lmc_jax.nn": ["native_conv.cc"]},
    entry_points={"console_scripts": [
        f"lmc-{name}=lmc_jax.cli.{name}:run"
        for name in ("zoo", "barrier", "swa", "plane", "redundancy", "dynamics", "bench",
                     "reproduce", "fetch", "merge")]},
    license="Apache-2.0",
    license_files=["LICENSE"],
    python_requires=">=3.10",
    install_requires=[
        # The floor, tested by scripts/floor_check.sh (requirements-floor.txt).
        "jax>=0.5.0",
        "jaxlib>=0.5.0",
        "flax>=0.10.0",
        "optax>=0.2.4",
        "numpy>=1.26",
        "scipy>=1.11",
        "matplotlib>=3.7",
        "absl-py>=1.4",
        "pillow>=9.5",
        "threadpoolctl>=3.1",
    ],
    extras_require={"test": ["pytest>=7", "pytest-xdist>=3", "ruff>=0.6"],
                    # experiments.bench's PyTorch rows (the CPU wheel is enough:
                    # pip install "torch==2.13.0+cpu").
                    "bench": ["torch>=2.0"],
                    # --tensorboard=DIR on experiments.zoo and experiments.barrier.
                    "tensorboard": ["tensorboardX>=2.6"],
                    # TFDS reads prepared datasets through TensorFlow; preparing one
                    # needs importlib_resources, which tensorflow-datasets leaves out.
                    "tfds": ["tensorflow-datasets>=4.9", "tensorflow>=2.16",
                             "importlib_resources"]},
)
