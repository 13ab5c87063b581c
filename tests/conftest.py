import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

# Most tests are bound by compiling small programs, not by running them. LLVM at
# optimisation level 1 instead of XLA's default 3 takes the non-heavy suite from
# about 555 s to 472 s on 2 cores (same tests, all passing). Not level 0: there
# results move by more than float rounding (the fused-step equality
# tests see 1.8e-5 against their 1e-5) and a one-generation ES test's mean does
# not move. Set before JAX starts its backend; subprocesses that set their own
# XLA_FLAGS append to these.
os.environ["XLA_FLAGS"] = " ".join(
    filter(None, [os.environ.get("XLA_FLAGS"), "--xla_backend_optimization_level=1"])
)

import jax

# Lets tests import the NumPy reference implementation next to them.
sys.path.insert(0, str(Path(__file__).parent))

# Tests compile the same small programs again and again (a PPO run on CartPole, a
# meta-training generation, each in several tests): JAX's persistent compilation
# cache lets a later test load what an earlier one compiled. One new directory per
# test process, so nothing carries over between sessions or races between workers;
# removed when the process ends (about 15 MB each).
_CACHE = tempfile.mkdtemp(prefix="lopt-tests-jax-cache-")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
