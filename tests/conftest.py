import atexit
import shutil
import sys
import tempfile
from pathlib import Path

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
