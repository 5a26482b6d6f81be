#!/usr/bin/env python3
"""A checkpoint holding `model` and `model_ema`, as the official and timm training scripts save it,
made without PyTorch from tools/make_pth_fixtures.py's custom_official.pth: its pickle is read with
stand-ins for torch's globals and written back naming the same globals; `model_ema` gets storages
of its own, equal to `model`'s except `head.bias` + 0.5 (so a test can tell which was read).

Usage: python3 tools/make_pth_ema_fixture.py tests/fixtures/extra/custom_official.pth \
           tests/fixtures/extra/custom_official_ema.pth
"""
import collections, io, pickle, struct, sys, zipfile

from torch_standins import StandIn, global_named

src, dst = sys.argv[1], sys.argv[2]
z = zipfile.ZipFile(src)
root = z.namelist()[0].split('/')[0]
files = {n: z.read(n) for n in z.namelist()}
class Storage:  # a persistent id: ('storage', dtype class, key, location, numel)
    def __init__(self, pid):
        self.pid = pid


class Reader(pickle.Unpickler):
    def find_class(self, mod, name):
        if (mod, name) == ('collections', 'OrderedDict'):
            return collections.OrderedDict
        return global_named(mod, name)

    def persistent_load(self, pid):
        return Storage(tuple(pid))


class Writer(pickle.Pickler):
    def persistent_id(self, o):
        return o.pid if isinstance(o, Storage) else None

    def reducer_override(self, o):
        return (type(o), o.args) if isinstance(o, StandIn) else NotImplemented


obj = Reader(io.BytesIO(files[f'{root}/data.pkl'])).load()
model = obj['model']
key = max(int(n.rsplit('/', 1)[1]) for n in files if '/data/' in n) + 1
ema = collections.OrderedDict()
for name, t in model.items():
    storage, rest = t.args[0], t.args[1:]
    raw = files[f'{root}/data/{storage.pid[2]}']
    vals = list(struct.unpack(f'<{len(raw) // 4}f', raw))
    if name == 'head.bias':
        vals = [v + 0.5 for v in vals]
    files[f'{root}/data/{key}'] = struct.pack(f'<{len(vals)}f', *vals)
    ema[name] = type(t)(Storage(storage.pid[:2] + (str(key),) + storage.pid[3:]), *rest)
    key += 1
buf = io.BytesIO()
Writer(buf, protocol=2).dump({'model': model, 'model_ema': ema, 'epoch': 299})
files[f'{root}/data.pkl'] = buf.getvalue()
with zipfile.ZipFile(dst, 'w', zipfile.ZIP_STORED) as out:
    for n, b in files.items():
        out.writestr(n, b)
print(f'{dst}: {len(model)} tensors under model and model_ema')
