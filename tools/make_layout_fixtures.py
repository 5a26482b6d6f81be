#!/usr/bin/env python3
"""The `custom` fixture as an official FCMAE pretraining checkpoint, made without PyTorch (pure
Python: the values are only moved, never recomputed, so custom_logits.bin applies to its encoder
with the head of custom_official_f32.safetensors):

  custom_fcmae_checkpoint.pth what the official FCMAE `main_pretrain.py` saves as checkpoint-N.pth:
                              {"model": FCMAE state dict, "optimizer", "epoch", "scaler", "args"
                              (an argparse.Namespace)}, the encoder under `encoder.` in
                              MinkowskiEngine layouts (.kernel [k², in, out], depthwise [k², C],
                              biases and GRN [1, C], .ln./.linear. wrappers), no head, plus the
                              decoder side (proj, mask_token, decoder.0.*, pred; decoder dim 8),
                              from custom_official_f32.safetensors

The Minkowski kernels are made by inverting the official fine-tuning script's
`remap_checkpoint_keys` (ConvNeXt-V2 utils.py) and checked by running that function's steps
(permute(2, 1, 0), reshape, transpose(3, 2); generic N-d permutes below) on the result: it must give
back the official tensors exactly. With PyTorch at hand (the venv of ../shared/STACK.md), `torch.load`
of the file and the official function itself, run on its `model` entry, give back all 76 official
tensors exactly (checked 2026-12-03, PyTorch 2.15).

Usage: python3 tools/make_layout_fixtures.py tests/fixtures/extra
"""
import collections, copyreg, io, itertools, json, pickle, random, struct, sys, zipfile

from torch_standins import StandIn, global_named

extra = sys.argv[1]


def read_safetensors(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    header = json.loads(b[8:8 + n])
    out = collections.OrderedDict()
    for k, v in header.items():
        if k == '__metadata__':
            continue
        lo, hi = v['data_offsets']
        out[k] = (v['dtype'], list(v['shape']), b[8 + n + lo:8 + n + hi])
    return out



def strides(shape):
    s, acc = [], 1
    for d in reversed(shape):
        s.append(acc)
        acc *= d
    return s[::-1]


def permute(vals, shape, perm):
    """torch.Tensor.permute on a row-major flat list: out[idx] = in[idx mapped through perm]."""
    st = strides(shape)
    out_shape = [shape[p] for p in perm]
    out = [vals[sum(i * st[p] for i, p in zip(idx, perm))]
           for idx in itertools.product(*[range(d) for d in out_shape])]
    return out, out_shape


def transpose(vals, shape, a, b):
    perm = list(range(len(shape)))
    perm[a], perm[b] = perm[b], perm[a]
    return permute(vals, shape, perm)


# --- official FCMAE pretraining checkpoint ------------------------------------------------------
official = {k: (list(struct.unpack(f'<{len(raw) // 4}f', raw)), shape)
            for k, (dtype, shape, raw) in read_safetensors(
                f'{extra}/custom_official_f32.safetensors').items()}
encoder = collections.OrderedDict()
for k, (vals, shape) in official.items():
    p = k.split('.')
    if p[0] in ('norm', 'head'):
        continue  # the sparse encoder has no head
    if p[0] == 'downsample_layers' and p[1] != '0':
        if p[2] == '0':  # MinkowskiLayerNorm wraps nn.LayerNorm as .ln
            encoder[f'encoder.{p[0]}.{p[1]}.0.ln.{p[3]}'] = (vals, shape)
        elif p[3] == 'weight':  # MinkowskiConvolution: [out, in, k, k] -> [k², in, out]
            v, s = transpose(vals, shape, 3, 2)
            v, s = permute(v, [s[0], s[1], s[2] * s[3]], [2, 1, 0])
            encoder[f'encoder.{p[0]}.{p[1]}.1.kernel'] = (v, s)
        else:
            encoder[f'encoder.{k}'] = (vals, [1, shape[0]])
    elif p[0] == 'stages':
        layer, leaf = p[3], p[4]
        if layer == 'dwconv' and leaf == 'weight':  # [C, 1, k, k] -> [k², C]
            v, s = transpose(vals, shape, 3, 2)
            v, s = permute(v, [s[0], s[2] * s[3]], [1, 0])
            encoder[f'encoder.stages.{p[1]}.{p[2]}.dwconv.kernel'] = (v, s)
        elif layer == 'dwconv':
            encoder[f'encoder.{k}'] = (vals, [1, shape[0]])
        elif layer == 'norm':
            encoder[f'encoder.stages.{p[1]}.{p[2]}.norm.ln.{leaf}'] = (vals, shape)
        elif layer in ('pwconv1', 'pwconv2'):
            encoder[f'encoder.stages.{p[1]}.{p[2]}.{layer}.linear.{leaf}'] = (vals, shape)
        elif layer == 'grn':  # MinkowskiGRN: [1, C]
            encoder[f'encoder.{k}'] = (vals, [1, shape[-1]])
        else:
            raise KeyError(k)
    else:
        encoder[f'encoder.{k}'] = (vals, shape)  # the dense stem

# The official remap_checkpoint_keys, step by step, must give back the official tensors.
remapped = {}
for k, (v, s) in encoder.items():
    k = k[len('encoder.'):]
    if k.endswith('kernel'):
        k = k[:-len('.kernel')] + '.weight'
        if len(s) == 3:
            kv, ind, outd = s
            ks = int(kv ** 0.5)
            v, s = permute(v, s, [2, 1, 0])
            v, s = transpose(v, [outd, ind, ks, ks], 3, 2)
        else:
            kv, dim = s
            ks = int(kv ** 0.5)
            v, s = permute(v, s, [1, 0])
            v, s = transpose(v, [dim, 1, ks, ks], 3, 2)
    elif 'ln' in k or 'linear' in k:
        q = k.split('.')
        q.pop(-2)
        k = '.'.join(q)
    remapped[k] = (v, s)
for k, (v, s) in remapped.items():
    if k.endswith('bias') and len(s) != 1:
        s = [len(v)]
    elif 'grn' in k:
        s = [1, 1] + s
    remapped[k] = (v, s)
want = {k: t for k, t in official.items() if not k.startswith(('norm.', 'head.'))}
assert remapped == want, sorted(set(remapped) ^ set(want))

rng = random.Random(0)
D = 8
decoder = collections.OrderedDict()
for k, s in [('proj.weight', [D, 64, 1, 1]), ('proj.bias', [D]), ('mask_token', [1, D, 1, 1]),
             ('decoder.0.dwconv.weight', [D, 1, 7, 7]), ('decoder.0.dwconv.bias', [D]),
             ('decoder.0.norm.weight', [D]), ('decoder.0.norm.bias', [D]),
             ('decoder.0.pwconv1.weight', [4 * D, D]), ('decoder.0.pwconv1.bias', [4 * D]),
             ('decoder.0.grn.gamma', [1, 1, 1, 4 * D]), ('decoder.0.grn.beta', [1, 1, 1, 4 * D]),
             ('decoder.0.pwconv2.weight', [D, 4 * D]), ('decoder.0.pwconv2.bias', [D]),
             ('pred.weight', [32 * 32 * 3, D, 1, 1]), ('pred.bias', [32 * 32 * 3])]:
    n = 1
    for d in s:
        n *= d
    decoder[k] = ([rng.gauss(0, 0.02) for _ in range(n)], s)

# torch.save's ZIP format with stand-ins for torch's globals.
rebuild = global_named('torch._utils', '_rebuild_tensor_v2')
float_storage = global_named('torch', 'FloatStorage')
storages = {}


def tensor(vals, shape):
    key = str(len(storages))
    storages[key] = struct.pack(f'<{len(vals)}f', *vals)
    pid = ('storage', float_storage, key, 'cpu', len(vals))
    return rebuild(pid, 0, tuple(shape), tuple(strides(shape)), False, collections.OrderedDict())


class Writer(pickle.Pickler):
    def persistent_id(self, o):
        return o if isinstance(o, tuple) and o[:1] == ('storage',) else None

    def reducer_override(self, o):
        return (type(o), o.args) if isinstance(o, StandIn) else NotImplemented


namespace = global_named('argparse', 'Namespace')
args = namespace.__new__(namespace)
args.__dict__.update({'model': 'convnextv2_custom', 'mask_ratio': 0.6, 'input_size': 224,
                      'decoder_embed_dim': D, 'decoder_depth': 1, 'norm_pix_loss': True})
model = collections.OrderedDict((k, tensor(v, s)) for k, (v, s) in encoder.items())
model.update((k, tensor(v, s)) for k, (v, s) in decoder.items())
ckpt = {'model': model,
        'optimizer': {'state': {0: {'step': tensor([800.0], []), 'exp_avg': tensor([0.0] * 4, [4])}},
                      'param_groups': [{'lr': 1.5e-4, 'weight_decay': 0.05, 'params': [0]}]},
        'epoch': 799, 'scaler': {'scale': 65536.0, 'growth_factor': 2.0}, 'args': args}


class ArgsWriter(Writer):
    def reducer_override(self, o):
        if isinstance(o, namespace):
            return (copyreg.__newobj__, (type(o),), dict(o.__dict__))
        return super().reducer_override(o)


buf = io.BytesIO()
ArgsWriter(buf, protocol=2).dump(ckpt)
root = 'checkpoint-799'
with zipfile.ZipFile(f'{extra}/custom_fcmae_checkpoint.pth', 'w', zipfile.ZIP_STORED) as out:
    def put(name, data):  # a fixed timestamp: the same bytes on every run
        out.writestr(zipfile.ZipInfo(f'{root}/{name}', date_time=(2026, 1, 1, 0, 0, 0)), data)
    put('data.pkl', buf.getvalue())
    put('byteorder', 'little')
    for key, raw in storages.items():
        put(f'data/{key}', raw)
    put('version', '3\n')
print(f'custom_fcmae_checkpoint.pth: {len(encoder)} encoder + {len(decoder)} decoder-side tensors')
