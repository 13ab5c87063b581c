"""Builds lopt's fused OPEN kernel (src/lopt/optim/csrc/open_step.cc), a CPU
custom call for XLA; everything else is in pyproject.toml.

The kernel is optional: where it does not build (no C++17 compiler), lopt installs
without it and OPEN runs its pure-JAX reference step, with a warning saying why
(lopt.optim.fused). XLA's FFI headers come from jaxlib, a build requirement.
Set LOPT_KERNEL_CFLAGS to replace the default -march=native (e.g. when building
on one machine for another).
"""

import os
import shlex
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _ffi_include() -> str:
    import importlib.util

    spec = importlib.util.find_spec("jaxlib")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("jaxlib (XLA's FFI headers) is not installed")
    include = Path(spec.submodule_search_locations[0]) / "include"
    if not (include / "xla/ffi/api/ffi.h").is_file():
        raise RuntimeError(f"no XLA FFI headers under {include}")
    return str(include)


class OptionalKernel(build_ext):
    """Builds the kernel if it can, and otherwise says why and goes on."""

    def build_extension(self, ext):
        try:
            ext.include_dirs.append(_ffi_include())
            super().build_extension(ext)
        except Exception as err:  # any failure leaves the reference step
            print(
                f"WARNING: lopt's fused OPEN kernel was not built ({err}); OPEN will "
                "run its pure-JAX reference step"
            )


flags = shlex.split(os.environ.get("LOPT_KERNEL_CFLAGS", "-march=native"))
setup(
    ext_modules=[
        Extension(
            "lopt.optim._open_step_kernel",
            sources=["src/lopt/optim/csrc/open_step.cc"],
            language="c++",
            extra_compile_args=["-std=c++17", "-O3", "-fno-math-errno", *flags],
            optional=True,
        )
    ],
    cmdclass={"build_ext": OptionalKernel},
)
