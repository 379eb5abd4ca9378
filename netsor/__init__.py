"""netsor: tensor programs, their infinite-width limits and finite-width checks.

    import netsor
    p = netsor.Program.from_file("programs/mlp_nngp.tp")
    p.limit()["relu_K[1][1]"].value      # 1.3333...

The compiled part, netsor._netsor, is built by scripts/bootstrap (CMake option
NETSOR_PYTHON). Installed by `cmake --install`, it sits beside this file; in a
checkout it is found in the build folder: $NETSOR_BUILD_DIR, else build/ next
to this package. See docs/python.md.
"""
import importlib.machinery
import importlib.util
import os
import sys


def _load_from_build():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    build = os.environ.get("NETSOR_BUILD_DIR") or os.path.join(root, "build")
    folder = os.path.join(build, "python")
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(folder, "_netsor" + suffix)
        if os.path.exists(path):
            spec = importlib.util.spec_from_file_location(__name__ + "._netsor", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            sys.modules[spec.name] = module
            return module
    raise ImportError(
        "netsor: the compiled module _netsor is not built: no %s/_netsor%s; run scripts/bootstrap "
        "(it needs Debian's pybind11-dev) or set NETSOR_BUILD_DIR to the build folder, "
        "and use the python that has numpy (Debian's /usr/bin/python3)"
        % (folder, importlib.machinery.EXTENSION_SUFFIXES[0]))


try:
    from . import _netsor
except ImportError:
    _netsor = _load_from_build()

Program = _netsor.Program
ProgramError = _netsor.ProgramError
UsageError = _netsor.UsageError
Estimate = _netsor.Estimate
Stats = _netsor.Stats
Series = _netsor.Series
Convergence = _netsor.Convergence
abc = _netsor.abc

for _cls in (Program, ProgramError, UsageError, Estimate, Stats, Series, Convergence):
    _cls.__module__ = __name__  # netsor.ProgramError in tracebacks, not netsor._netsor.ProgramError

__all__ = ["Program", "ProgramError", "UsageError", "Estimate", "Stats", "Series", "Convergence", "abc"]
