"""Stand-ins for PyTorch's pickled globals, so that the fixture tools read and write torch.save
files without PyTorch: a REDUCE of a torch global (e.g. `torch._utils._rebuild_tensor_v2`) builds
a `StandIn` holding the call's arguments, and a `StandIn` pickles back as the same GLOBAL."""
import sys, types

_modules = {}


class StandIn:
    """What a REDUCE of a torch global builds: the call's arguments."""
    def __init__(self, *args):
        self.args = args


def global_named(mod, name):
    """A stand-in class that pickles back as GLOBAL `mod name`."""
    m = _modules.setdefault(mod, types.ModuleType(mod))
    if not hasattr(m, name):
        setattr(m, name, type(name, (StandIn,), {'__module__': mod, '__qualname__': name}))
    sys.modules[mod] = m
    return getattr(m, name)
