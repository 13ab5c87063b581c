import sys
from pathlib import Path

# Lets tests import the NumPy reference implementation next to them.
sys.path.insert(0, str(Path(__file__).parent))
