# The Python tests import netsor from the repository root (the package folder
# netsor/), with the compiled module from $NETSOR_BUILD_DIR (set by CTest).
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
