#!/usr/bin/python3
"""deltagraph's own reference cases, computed by PyTorch in float64.

    /usr/bin/python3 tools/reference/gen_cases.py [--out tests/data/reference] [NAME...]

Writes one JSON file per case in the format of tests/data/reference/FORMAT.md (section 2): the
inputs, every node's output, the gradients of L = sum_k <cotangent_k, value_k> with respect to
every input that requires a gradient. Deterministic: the seed of each case comes from its name,
so a rerun writes byte-identical files. Needs Debian's python3-torch (1.13); nothing in the
build or the test suite runs this script, only a person regenerating the cases.

Each case below is a small graph written with the op names, input order and attributes of
deltagraph's registry, every attribute spelled out; OPS says how PyTorch computes each op.
"""
import argparse
import hashlib
import json
import math
import os
import sys

import numpy
import torch
import torch.nn.functional as F

SOURCE = "PyTorch 1.13.1, float64"

# How PyTorch computes each op: f(inputs, attrs) -> list of outputs.
OPS = {
    "relu": lambda x, a: [F.relu(x[0])],
    "leaky_relu": lambda x, a: [F.leaky_relu(x[0], a["negative_slope"])],
    "conv2d": lambda x, a: [conv2d(x, a)],
    "argmax": lambda x, a: [torch.argmax(x[0], dim=a["axis"], keepdim=a["keepdims"])],
    "softmax_xent": lambda x, a: [F.cross_entropy(x[0], x[1], x[2] if len(x) > 2 else None,
                                                  reduction=a["reduction"],
                                                  ignore_index=a["ignore_index"],
                                                  label_smoothing=a["label_smoothing"])],
    "softmax": lambda x, a: [F.softmax(x[0], dim=a["axis"])],
    "log_softmax": lambda x, a: [F.log_softmax(x[0], dim=a["axis"])],
    "adaptive_avg_pool2d": lambda x, a: [F.adaptive_avg_pool2d(x[0], a["output_size"])],
    "flatten": lambda x, a: [torch.flatten(x[0], 1)],
    "linear": lambda x, a: [F.linear(x[0], x[1], x[2] if len(x) > 2 else None)],
    "pad2d": lambda x, a: [F.pad(x[0], tuple(a["pads"]), mode=a["mode"],
                                 **({"value": a["value"]} if a["mode"] == "constant" else {}))],
    "max_pool2d": lambda x, a: max_pool2d(x[0], a),
    "max_unpool2d": lambda x, a: [F.max_unpool2d(x[0], x[1], a["kernel_size"], a["stride"] or None,
                                                 0, unpool_size(x[1], a))],
    "avg_pool2d": lambda x, a: [avg_pool2d(x[0], a)],
    "sum": lambda x, a: [x[0].sum(dim=a["axes"] or None, keepdim=a["keepdims"])
                         if a["axes"] else x[0].sum()],
    "cat": lambda x, a: [torch.cat(x, dim=a["axis"])],
    "upsample_nearest2d": lambda x, a: [upsample_nearest2d(x[0], a["output_size"])],
    "upsample_bilinear2d": lambda x, a: [F.interpolate(x[0], size=tuple(a["output_size"]),
                                                       mode="bilinear",
                                                       align_corners=a["align_corners"])],
    # Copies of the running buffers: PyTorch updates them in place in training, which the
    # case format does not record (y alone is compared); the inputs stay as written.
    "batch_norm2d": lambda x, a: [F.batch_norm(x[0], x[3].clone(), x[4].clone(), x[1], x[2],
                                               a["training"], a["momentum"], a["eps"])],
    "dropout": lambda x, a: [dropout(x[0], a["p"], a["training"], a["seed"])],
}


def four_sides(padding):
    """deltagraph's padding attribute as [top, bottom, left, right] (p, [h, w] or four values)."""
    if isinstance(padding, int):
        return [padding] * 4
    if len(padding) == 2:
        return [padding[0], padding[0], padding[1], padding[1]]
    return list(padding)


def symmetric(sides):
    """[h, w] for PyTorch when the four sides pair up, else None."""
    t, b, l, r = sides
    return [t, l] if t == b and l == r else None


def conv2d(x, a):
    """F.conv2d; four different sides (which PyTorch lacks) pad with F.pad first. "same" and
    "valid" are PyTorch's own (stride 1; the odd extra row/column at the bottom/right)."""
    w, b = x[1], x[2] if len(x) > 2 else None
    p = a["padding"]
    if isinstance(p, str):
        return F.conv2d(x[0], w, b, a["stride"], p, a["dilation"], a["groups"])
    sides = four_sides(p)
    if symmetric(sides):
        return F.conv2d(x[0], w, b, a["stride"], symmetric(sides), a["dilation"], a["groups"])
    t, bottom, l, r = sides
    return F.conv2d(F.pad(x[0], (l, r, t, bottom)), w, b, a["stride"], 0, a["dilation"],
                    a["groups"])


def pool_out(size, k, s, before, after, d, ceil_mode):
    """deltagraph's pooled size along one axis (FORMAT.md 5.5, per side): in ceil mode the last
    window must start inside the input or its top/left padding."""
    span = size + before + after - d * (k - 1) - 1
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + before:
        out -= 1
    return out


def padded_pool(x, a, pool):
    """A pool with four-sided padding: pool(x padded by F.pad, padding 0), cut to deltagraph's
    output size (PyTorch's ceil rule on the padded input would keep a last window that starts in
    the bottom/right padding)."""
    t, b, l, r = four_sides(a["padding"])
    k, s = a["kernel_size"], a["stride"] if a["stride"] != [0, 0] else a["kernel_size"]
    d = a.get("dilation", [1, 1])
    H, W = x.shape[-2:]
    Ho = pool_out(H, k[0], s[0], t, b, d[0], a["ceil_mode"])
    Wo = pool_out(W, k[1], s[1], l, r, d[1], a["ceil_mode"])
    outs = pool((t, b, l, r), k, s, d)
    return [o[..., :Ho, :Wo] for o in outs]


def max_pool2d(x, a):
    sides = four_sides(a["padding"])
    if symmetric(sides):
        y, indices = F.max_pool2d(x, a["kernel_size"], a["stride"] or None, symmetric(sides),
                                  a["dilation"], ceil_mode=a["ceil_mode"], return_indices=True)
    else:
        def pool(pads, k, s, d):
            t, b, l, r = pads
            padded = F.pad(x, (l, r, t, b), value=-math.inf)
            y, i = F.max_pool2d(padded, k, s, 0, d, ceil_mode=a["ceil_mode"], return_indices=True)
            # Flat positions of the padded plane back to h*W + w of the input's.
            Wp = padded.shape[-1]
            return [y, (i // Wp - t) * x.shape[-1] + (i % Wp - l)]
        y, indices = padded_pool(x, a, pool)
    indices.plane = tuple(x.shape[-2:])  # deltagraph's indices carry the plane they index
    return [y, indices]


def avg_pool2d(x, a):
    sides = four_sides(a["padding"])
    if symmetric(sides):
        return F.avg_pool2d(x, a["kernel_size"], a["stride"] or None, symmetric(sides),
                            a["ceil_mode"], a["count_include_pad"])

    def pool(pads, k, s, d):
        t, b, l, r = pads
        padded = F.pad(x, (l, r, t, b))
        if a["count_include_pad"]:  # the padding counts: the padded input's own divisor
            return [F.avg_pool2d(padded, k, s, 0, a["ceil_mode"], True)]
        # Only real cells count: window sums over the number of real cells in each window.
        sums = F.avg_pool2d(padded, k, s, 0, a["ceil_mode"], True, divisor_override=1)
        cells = F.avg_pool2d(F.pad(torch.ones_like(x), (l, r, t, b)), k, s, 0, a["ceil_mode"],
                             True, divisor_override=1)
        return [sums / cells]
    return padded_pool(x, a, pool)[0]


def unpool_size(indices, a):
    """deltagraph's max_unpool2d output size: output_size when given; with [0, 0], the pool's
    input size for indices from a max_pool2d (if PyTorch would accept it as an explicit size),
    else PyTorch's default formula, (h-1)*stride - top - bottom + kernel (which PyTorch is
    given explicitly: its own padding argument has two sides only)."""
    if a["output_size"] != [0, 0]:
        return tuple(a["output_size"])
    h, w = indices.shape[-2:]
    k, s = a["kernel_size"], a["stride"] if a["stride"] != [0, 0] else a["kernel_size"]
    t, b, l, r = four_sides(a["padding"])
    default = [(h - 1) * s[0] - t - b + k[0], (w - 1) * s[1] - l - r + k[1]]
    plane = getattr(indices, "plane", None)
    if plane is not None and all(default[d] - s[d] < plane[d] < default[d] + s[d]
                                 for d in range(2)):
        return plane
    return tuple(default)


def nearest_source(o, size_in, size_out):
    """PyTorch 1.13's nearest_idx (UpSample.h): the input index output index o reads."""
    if size_out == size_in:
        return o
    if size_out == 2 * size_in:
        return o >> 1
    scale = numpy.float32(size_in) / numpy.float32(size_out)
    return min(math.floor(numpy.float32(o) * scale), size_in - 1)


def upsample_nearest2d(x, output_size):
    """F.interpolate, checked against nearest_idx: PyTorch 1.13's float64 forward with C > 1
    rounds differently and can disagree with its own backward (FORMAT.md section 8)."""
    y = F.interpolate(x, size=tuple(output_size), mode="nearest")
    rows = [nearest_source(i, x.shape[2], output_size[0]) for i in range(output_size[0])]
    cols = [nearest_source(j, x.shape[3], output_size[1]) for j in range(output_size[1])]
    if not torch.equal(y.detach(), x.detach()[:, :, rows][:, :, :, cols]):
        raise ValueError(f"upsample_nearest2d {list(x.shape)} -> {output_size}: PyTorch's "
                         "forward does not follow nearest_idx here; use one channel")
    return y


UINT64 = (1 << 64) - 1


def splitmix64(z):
    z = (z + 0x9e3779b97f4a7c15) & UINT64
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & UINT64
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & UINT64
    return z ^ (z >> 31)


def dropout(x, p, training, seed):
    """deltagraph's dropout (FORMAT.md section 8), not PyTorch's RNG: element i (flat, row-major)
    is kept iff u(seed, i) = (splitmix64(splitmix64(seed) ^ i) >> 11) * 2^-53 >= p."""
    if not training or p == 0:
        return x.clone()
    if p == 1:
        return x * 0.0
    seed_hash = splitmix64(seed & UINT64)
    keep = [float((splitmix64(seed_hash ^ i) >> 11) * 2.0 ** -53 >= p) for i in range(x.numel())]
    mask = torch.tensor(keep, dtype=torch.float64).reshape(x.shape)
    return x * mask / (1 - p)


def seed_of(name):
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


def median_frequency_weights(labels, classes):
    """SegNet's median frequency balancing: weight_c = median(freq) / freq_c, where freq_c is
    the number of pixels of class c over the total pixels of the images (axis 0) where c
    appears."""
    per_image = labels.reshape(labels.shape[0], -1)
    pixels = per_image.shape[1]
    freq = []
    for c in range(classes):
        counts = (per_image == c).sum(dim=1)
        if not bool((counts > 0).any()):
            raise ValueError(f"class {c} appears in no image: its frequency is undefined")
        freq.append(int(counts.sum()) / (pixels * int((counts > 0).sum())))
    median = float(numpy.median(freq))
    return torch.tensor([median / f for f in freq], dtype=torch.float64)


def draw(spec, generator, values):
    """An input tensor from its spec: ("randn", shape[, scale]), ("rand", shape, low, high)
    (uniform, e.g. a positive variance), ("randint", shape, high), ("labels", shape, high,
    ignore_index, positions) (randint with the flat positions set to ignore_index),
    ("categorical", shape, probabilities) (class labels drawn with those frequencies),
    ("probs", shape) (softmax of randn over axis 1: probability labels), ("values", shape, list)
    or ("median_frequency", labels, classes) (class weights computed from the input labels)."""
    kind, shape = spec[0], spec[1]
    if kind == "randn":
        scale = spec[2] if len(spec) > 2 else 1.0
        return torch.randn(shape, generator=generator, dtype=torch.float64) * scale
    if kind == "rand":
        low, high = spec[2], spec[3]
        return low + (high - low) * torch.rand(shape, generator=generator, dtype=torch.float64)
    if kind == "randint":
        return torch.randint(0, spec[2], shape, generator=generator, dtype=torch.int64)
    if kind == "labels":
        labels = torch.randint(0, spec[2], shape, generator=generator, dtype=torch.int64)
        labels.view(-1)[spec[4]] = spec[3]
        return labels
    if kind == "categorical":
        p = torch.tensor(spec[2], dtype=torch.float64)
        count = math.prod(shape)
        return torch.multinomial(p, count, replacement=True, generator=generator).reshape(shape)
    if kind == "probs":
        return F.softmax(torch.randn(shape, generator=generator, dtype=torch.float64), dim=1)
    if kind == "values":
        return torch.tensor(spec[2], dtype=torch.float64).reshape(shape)
    if kind == "median_frequency":
        return median_frequency_weights(values[spec[1]], spec[2])
    raise ValueError(kind)


def tensor_json(t, requires_grad=None):
    out = {"shape": list(t.shape),
           "dtype": "int64" if t.dtype == torch.int64 else "float64",
           "data": [int(v) if t.dtype == torch.int64 else float(v) for v in t.flatten().tolist()]}
    if requires_grad is not None:
        out["requires_grad"] = requires_grad
    return out


def run_case(case):
    name = case["name"]
    generator = torch.Generator().manual_seed(seed_of(name))
    values, inputs = {}, {}
    for input_name, spec in case["inputs"].items():
        t = draw(spec["draw"], generator, values)
        # A forward-only case (no cotangents: an op that is not differentiable) has no gradients.
        requires_grad = spec.get("requires_grad",
                                 t.dtype == torch.float64 and bool(case["cotangents"]))
        if requires_grad:
            t.requires_grad_(True)
        values[input_name] = t
        inputs[input_name] = tensor_json(t.detach(), requires_grad)
    for node in case["nodes"]:
        outs = OPS[node["op"]]([values[i] for i in node["inputs"]], node["attrs"])
        for out_name, t in zip(node["outputs"], outs):
            values[out_name] = t
    cotangents = {}
    total = 0
    for out_name in case["cotangents"]:
        v = values[out_name]
        c = (torch.ones((), dtype=torch.float64) if v.dim() == 0 else
             torch.randn(v.shape, generator=generator, dtype=torch.float64))
        cotangents[out_name] = tensor_json(c)
        total = total + (v * c).sum()
    wrt = [n for n in case["inputs"] if inputs[n]["requires_grad"]]
    grads = torch.autograd.grad(total, [values[n] for n in wrt], allow_unused=True) if wrt else []
    return {
        "name": name,
        "source": SOURCE,
        "inputs": inputs,
        "nodes": [{"op": n["op"], "inputs": n["inputs"], "attrs": n["attrs"],
                   "outputs": n["outputs"]} for n in case["nodes"]],
        "cotangents": cotangents,
        "expected": {o: tensor_json(values[o].detach()) for n in case["nodes"] for o in n["outputs"]},
        "grads": {n: tensor_json(g if g is not None else torch.zeros_like(values[n]))
                  for n, g in zip(wrt, grads)},
        "tolerance": case.get("tolerance", {"rtol": 1e-10, "atol": 1e-11}),
    }


def scalar_text(v):
    return repr(v) if isinstance(v, float) else json.dumps(v)


def dump(obj, indent=0, key=None):
    """JSON exactly as deltagraph's case writer (dg::write_case) writes it, so that a case read
    and written again comes back byte for byte: one key per line, lists of numbers on one line,
    attributes and tolerances on one line."""
    pad = " " * indent
    if isinstance(obj, dict) and key in ("attrs", "tolerance"):
        return "{" + ", ".join(f"{json.dumps(k)}: " + (
            "[" + ", ".join(scalar_text(e) for e in v) + "]" if isinstance(v, list)
            else scalar_text(v)) for k, v in obj.items()) + "}"
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{pad} {json.dumps(k)}: {dump(v, indent + 1, k)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and any(isinstance(v, (dict, list)) for v in obj):
        items = [f"{pad} {dump(v, indent + 1)}" for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    if isinstance(obj, list):
        return "[" + ", ".join(scalar_text(v) for v in obj) + "]"
    return scalar_text(obj)


def x(shape, scale=1.0):
    return {"draw": ("randn", shape, scale)}


CASES = [
    {"name": "leaky_relu_default_slope",
     "inputs": {"x": x([2, 3, 4, 5])},
     "nodes": [{"op": "leaky_relu", "inputs": ["x"], "attrs": {"negative_slope": 0.01},
                "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "leaky_relu_slope0p2_2d",
     "inputs": {"x": x([3, 7])},
     "nodes": [{"op": "leaky_relu", "inputs": ["x"], "attrs": {"negative_slope": 0.2},
                "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "leaky_relu_negative_slope_with_zeros",
     # Exact zeros: PyTorch's gradient there is the slope.
     "inputs": {"x": {"draw": ("values", [2, 3], [-1.5, 0.0, 2.0, 0.0, -0.25, 3.0])}},
     "nodes": [{"op": "leaky_relu", "inputs": ["x"], "attrs": {"negative_slope": -0.5},
                "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "argmax_axis1_4d",
     "inputs": {"x": x([2, 5, 3, 4])},
     "nodes": [{"op": "argmax", "inputs": ["x"], "attrs": {"axis": 1, "keepdims": False},
                "outputs": ["i"]}],
     "cotangents": []},
    {"name": "argmax_negative_axis_keepdims_nonsquare",
     "inputs": {"x": x([3, 4, 7])},
     "nodes": [{"op": "argmax", "inputs": ["x"], "attrs": {"axis": -1, "keepdims": True},
                "outputs": ["i"]}],
     "cotangents": []},
    {"name": "argmax_ties_first_wins",
     # Small integers as floats: many ties, and the first maximum must win.
     "inputs": {"x": {"draw": ("values", [3, 4], [2, 0, 2, 1, 1, 1, 1, 1, 0, 3, 3, -1])}},
     "nodes": [{"op": "argmax", "inputs": ["x"], "attrs": {"axis": 1, "keepdims": False},
                "outputs": ["i"]},
               {"op": "argmax", "inputs": ["x"], "attrs": {"axis": 0, "keepdims": False},
                "outputs": ["j"]}],
     "cotangents": []},
    {"name": "net_conv_argmax_pseudo_labels",
     # Training on the model's own predictions: the labels are argmax of the logits.
     "inputs": {"x": x([2, 3, 5, 4]), "w": x([4, 3, 3, 3], 1 / 27 ** 0.5)},
     "nodes": [
         {"op": "conv2d", "inputs": ["x", "w"],
          "attrs": {"stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 1},
          "outputs": ["logits"]},
         {"op": "argmax", "inputs": ["logits"], "attrs": {"axis": 1, "keepdims": False},
          "outputs": ["labels"]},
         {"op": "softmax_xent", "inputs": ["logits", "labels"],
          "attrs": {"reduction": "mean", "ignore_index": -100, "label_smoothing": 0.0},
          "outputs": ["loss"]}],
     "cotangents": ["loss"]},
    {"name": "softmax_axis1_4d",
     "inputs": {"x": x([2, 5, 3, 4])},
     "nodes": [{"op": "softmax", "inputs": ["x"], "attrs": {"axis": 1}, "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "softmax_last_axis_nonsquare",
     "inputs": {"x": x([3, 2, 7])},
     "nodes": [{"op": "softmax", "inputs": ["x"], "attrs": {"axis": -1}, "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "softmax_axis0_2d",
     "inputs": {"x": x([4, 3])},
     "nodes": [{"op": "softmax", "inputs": ["x"], "attrs": {"axis": 0}, "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "log_softmax_axis2_4d",
     "inputs": {"x": x([2, 3, 5, 2])},
     "nodes": [{"op": "log_softmax", "inputs": ["x"], "attrs": {"axis": 2}, "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "log_softmax_negative_axis_3d",
     "inputs": {"x": x([2, 6, 3])},
     "nodes": [{"op": "log_softmax", "inputs": ["x"], "attrs": {"axis": -2}, "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "net_conv_softmax_over_width",
     # Attention-like: conv features normalised over the width of each row, then summed.
     "inputs": {"x": x([2, 2, 4, 6]), "w": x([3, 2, 3, 3], 1 / 18 ** 0.5)},
     "nodes": [
         {"op": "conv2d", "inputs": ["x", "w"],
          "attrs": {"stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 1},
          "outputs": ["f"]},
         {"op": "softmax", "inputs": ["f"], "attrs": {"axis": -1}, "outputs": ["a"]},
         {"op": "log_softmax", "inputs": ["f"], "attrs": {"axis": 1}, "outputs": ["l"]}],
     "cotangents": ["a", "l"]},
    {"name": "adaptive_avgpool_global",
     "inputs": {"x": x([2, 3, 5, 7])},
     "nodes": [{"op": "adaptive_avg_pool2d", "inputs": ["x"], "attrs": {"output_size": [1, 1]},
                "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "adaptive_avgpool_out3x2_overlapping_windows",
     "inputs": {"x": x([2, 2, 7, 5])},
     "nodes": [{"op": "adaptive_avg_pool2d", "inputs": ["x"], "attrs": {"output_size": [3, 2]},
                "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "adaptive_avgpool_upsamples_out5x4_from_3x2",
     "inputs": {"x": x([1, 3, 3, 2])},
     "nodes": [{"op": "adaptive_avg_pool2d", "inputs": ["x"], "attrs": {"output_size": [5, 4]},
                "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "net_conv_relu_global_avgpool_linear",
     # A modern classifier's head: features, global average pooling, a linear layer, the loss.
     "inputs": {"x": x([3, 2, 6, 5]), "w": x([4, 2, 3, 3], 1 / 18 ** 0.5),
                "fc": x([5, 4], 0.5), "labels": {"draw": ("randint", [3], 5)}},
     "nodes": [
         {"op": "conv2d", "inputs": ["x", "w"],
          "attrs": {"stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 1},
          "outputs": ["f"]},
         {"op": "relu", "inputs": ["f"], "attrs": {}, "outputs": ["r"]},
         {"op": "adaptive_avg_pool2d", "inputs": ["r"], "attrs": {"output_size": [1, 1]},
          "outputs": ["p"]},
         {"op": "flatten", "inputs": ["p"], "attrs": {}, "outputs": ["v"]},
         {"op": "linear", "inputs": ["v", "fc"], "attrs": {}, "outputs": ["logits"]},
         {"op": "softmax_xent", "inputs": ["logits", "labels"],
          "attrs": {"reduction": "mean", "ignore_index": -100, "label_smoothing": 0.0},
          "outputs": ["loss"]}],
     "cotangents": ["loss"]},
    {"name": "pad2d_constant_value_nonsquare",
     "inputs": {"x": x([2, 3, 4, 5])},
     "nodes": [{"op": "pad2d", "inputs": ["x"],
                "attrs": {"pads": [2, 1, 0, 3], "mode": "constant", "value": 0.5},
                "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "pad2d_reflect_asymmetric",
     "inputs": {"x": x([2, 2, 5, 4])},
     "nodes": [{"op": "pad2d", "inputs": ["x"],
                "attrs": {"pads": [3, 1, 2, 4], "mode": "reflect", "value": 0.0},
                "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "pad2d_replicate_wider_than_input",
     "inputs": {"x": x([1, 3, 2, 3])},
     "nodes": [{"op": "pad2d", "inputs": ["x"],
                "attrs": {"pads": [4, 2, 3, 5], "mode": "replicate", "value": 0.0},
                "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "net_odd_maxpool_unpool_default_size",
     # A 9x7 map pooled to 4x3 and unpooled with output_size [0, 0]: back to 9x7, the size the
     # indices carry (PyTorch's formula default, 8x6, would reject them).
     "inputs": {"x": x([2, 2, 9, 7])},
     "nodes": [
         {"op": "max_pool2d", "inputs": ["x"],
          "attrs": {"kernel_size": [2, 2], "stride": [2, 2], "padding": [0, 0],
                    "dilation": [1, 1], "ceil_mode": False},
          "outputs": ["m", "i"]},
         {"op": "max_unpool2d", "inputs": ["m", "i"],
          "attrs": {"kernel_size": [2, 2], "stride": [2, 2], "padding": [0, 0],
                    "output_size": [0, 0]},
          "outputs": ["u"]}],
     "cotangents": ["u"]},
    # ---- padding: four sides and "same" --------------------------------------------------
    {"name": "conv2d_padding_four_sided_nonsquare",
     "inputs": {"x": x([2, 3, 7, 6]), "w": x([4, 3, 3, 2], 1 / 18 ** 0.5), "b": x([4])},
     "nodes": [{"op": "conv2d", "inputs": ["x", "w", "b"],
                "attrs": {"stride": [1, 1], "padding": [0, 2, 1, 0], "dilation": [1, 1],
                          "groups": 1},
                "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "conv2d_padding_four_sided_stride_dilation_groups",
     "inputs": {"x": x([2, 4, 9, 8]), "w": x([6, 2, 3, 3], 1 / 18 ** 0.5)},
     "nodes": [{"op": "conv2d", "inputs": ["x", "w"],
                "attrs": {"stride": [2, 3], "padding": [2, 1, 0, 1], "dilation": [1, 2],
                          "groups": 2},
                "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "conv2d_padding_same_even_kernel",
     # A 2x4 kernel: one row below, one column left and two right (the odd one on the right).
     "inputs": {"x": x([2, 3, 6, 5]), "w": x([4, 3, 2, 4], 1 / 24 ** 0.5), "b": x([4])},
     "nodes": [{"op": "conv2d", "inputs": ["x", "w", "b"],
                "attrs": {"stride": [1, 1], "padding": "same", "dilation": [1, 1], "groups": 1},
                "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "conv2d_padding_same_dilated_groups",
     "inputs": {"x": x([1, 4, 7, 6]), "w": x([4, 2, 3, 2], 1 / 12 ** 0.5)},
     "nodes": [{"op": "conv2d", "inputs": ["x", "w"],
                "attrs": {"stride": [1, 1], "padding": "same", "dilation": [2, 3], "groups": 2},
                "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "conv2d_padding_valid",
     "inputs": {"x": x([2, 2, 5, 6]), "w": x([3, 2, 3, 2], 1 / 12 ** 0.5)},
     "nodes": [{"op": "conv2d", "inputs": ["x", "w"],
                "attrs": {"stride": [1, 1], "padding": "valid", "dilation": [1, 1], "groups": 1},
                "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "max_pool2d_padding_four_sided",
     "inputs": {"x": x([2, 3, 7, 6])},
     "nodes": [{"op": "max_pool2d", "inputs": ["x"],
                "attrs": {"kernel_size": [3, 3], "stride": [2, 2], "padding": [0, 1, 1, 0],
                          "dilation": [1, 1], "ceil_mode": False},
                "outputs": ["y", "i"]}],
     "cotangents": ["y"]},
    {"name": "max_pool2d_padding_four_sided_ceil_dilation",
     # Ceil mode with bottom/right padding: a last window that would start in the bottom
     # padding is dropped (it must start in the input or the top padding).
     "inputs": {"x": x([1, 2, 8, 7])},
     "nodes": [{"op": "max_pool2d", "inputs": ["x"],
                "attrs": {"kernel_size": [2, 3], "stride": [2, 2], "padding": [0, 1, 1, 1],
                          "dilation": [1, 2], "ceil_mode": True},
                "outputs": ["y", "i"]}],
     "cotangents": ["y"]},
    {"name": "max_pool_unpool_padding_four_sided",
     # TensorFlow's SAME pooling of an odd map: one row below and one column right; unpooled
     # with the same padding and output_size [0, 0], back to 7x5.
     "inputs": {"x": x([2, 2, 7, 5])},
     "nodes": [
         {"op": "max_pool2d", "inputs": ["x"],
          "attrs": {"kernel_size": [2, 2], "stride": [2, 2], "padding": [0, 1, 0, 1],
                    "dilation": [1, 1], "ceil_mode": False},
          "outputs": ["m", "i"]},
         {"op": "max_unpool2d", "inputs": ["m", "i"],
          "attrs": {"kernel_size": [2, 2], "stride": [2, 2], "padding": [0, 1, 0, 1],
                    "output_size": [0, 0]},
          "outputs": ["u"]}],
     "cotangents": ["u"]},
    {"name": "avg_pool2d_padding_four_sided_count_pad",
     "inputs": {"x": x([2, 3, 7, 6])},
     "nodes": [{"op": "avg_pool2d", "inputs": ["x"],
                "attrs": {"kernel_size": [3, 2], "stride": [2, 1], "padding": [1, 0, 0, 1],
                          "ceil_mode": False, "count_include_pad": True},
                "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "avg_pool2d_padding_four_sided_real_cells_ceil",
     "inputs": {"x": x([2, 2, 6, 7])},
     "nodes": [{"op": "avg_pool2d", "inputs": ["x"],
                "attrs": {"kernel_size": [3, 3], "stride": [2, 2], "padding": [0, 1, 1, 0],
                          "ceil_mode": True, "count_include_pad": False},
                "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "net_tf_same_conv_pool_strided_conv",
     # A network as TensorFlow exports it: "same" conv, SAME max-pool of an odd map ([0,1,0,1]),
     # a stride-2 conv with TensorFlow's SAME padding written out ([0,1,0,1] for k3 on 4x3),
     # SAME average pooling (real cells only) and a class-weighted loss.
     "inputs": {"x": x([2, 3, 7, 5]), "w1": x([4, 3, 3, 3], 1 / 27 ** 0.5), "b1": x([4]),
                "w2": x([3, 4, 3, 3], 1 / 36 ** 0.5),
                "labels": {"draw": ("categorical", [2, 1, 1], [0.4, 0.3, 0.3])}},
     "nodes": [
         {"op": "conv2d", "inputs": ["x", "w1", "b1"],
          "attrs": {"stride": [1, 1], "padding": "same", "dilation": [1, 1], "groups": 1},
          "outputs": ["f"]},
         {"op": "relu", "inputs": ["f"], "attrs": {}, "outputs": ["r"]},
         {"op": "max_pool2d", "inputs": ["r"],
          "attrs": {"kernel_size": [2, 2], "stride": [2, 2], "padding": [0, 1, 0, 1],
                    "dilation": [1, 1], "ceil_mode": False},
          "outputs": ["m", "i"]},
         {"op": "conv2d", "inputs": ["m", "w2"],
          "attrs": {"stride": [2, 2], "padding": [0, 1, 0, 1], "dilation": [1, 1], "groups": 1},
          "outputs": ["g"]},
         {"op": "avg_pool2d", "inputs": ["g"],
          "attrs": {"kernel_size": [2, 2], "stride": [2, 2], "padding": [0, 0, 0, 1],
                    "ceil_mode": False, "count_include_pad": False},
          "outputs": ["logits"]},
         {"op": "softmax_xent", "inputs": ["logits", "labels"],
          "attrs": {"reduction": "mean", "ignore_index": -100, "label_smoothing": 0.0},
          "outputs": ["loss"]}],
     "cotangents": ["loss"]},
    {"name": "net_reflect_pad_conv_relu_maxpool",
     # "Same" convolution by explicit reflection padding, as style-transfer networks do.
     "inputs": {"x": x([2, 2, 6, 5]), "w": x([3, 2, 3, 3], 1 / 18 ** 0.5)},
     "nodes": [
         {"op": "pad2d", "inputs": ["x"],
          "attrs": {"pads": [1, 1, 1, 1], "mode": "reflect", "value": 0.0}, "outputs": ["p"]},
         {"op": "conv2d", "inputs": ["p", "w"],
          "attrs": {"stride": [1, 1], "padding": [0, 0], "dilation": [1, 1], "groups": 1},
          "outputs": ["f"]},
         {"op": "relu", "inputs": ["f"], "attrs": {}, "outputs": ["r"]},
         {"op": "max_pool2d", "inputs": ["r"],
          "attrs": {"kernel_size": [2, 2], "stride": [2, 2], "padding": [0, 0],
                    "dilation": [1, 1], "ceil_mode": False},
          "outputs": ["m", "i"]}],
     "cotangents": ["m"]},
    {"name": "net_conv_leaky_relu_sum",
     "inputs": {"x": x([2, 3, 6, 5]), "w": x([4, 3, 3, 3], 1 / 27 ** 0.5), "b": x([4])},
     "nodes": [
         {"op": "conv2d", "inputs": ["x", "w", "b"],
          "attrs": {"stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 1},
          "outputs": ["y"]},
         {"op": "leaky_relu", "inputs": ["y"], "attrs": {"negative_slope": 0.1},
          "outputs": ["r"]},
         {"op": "sum", "inputs": ["r"], "attrs": {"axes": [], "keepdims": False},
          "outputs": ["loss"]}],
     "cotangents": ["loss"]},
    {"name": "cat_axis1_two_inputs_nonsquare",
     "inputs": {"x1": x([2, 3, 4, 5]), "x2": x([2, 2, 4, 5])},
     "nodes": [{"op": "cat", "inputs": ["x1", "x2"], "attrs": {"axis": 1}, "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "cat_axis0_three_inputs",
     "inputs": {"x1": x([1, 3, 2, 5]), "x2": x([3, 3, 2, 5]), "x3": x([2, 3, 2, 5])},
     "nodes": [{"op": "cat", "inputs": ["x1", "x2", "x3"], "attrs": {"axis": 0},
                "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "cat_negative_axis_three_inputs_3d",
     "inputs": {"x1": x([2, 3, 4]), "x2": x([2, 3, 1]), "x3": x([2, 3, 6])},
     "nodes": [{"op": "cat", "inputs": ["x1", "x2", "x3"], "attrs": {"axis": -1},
                "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "cat_one_input_axis2",
     # One input: a copy.
     "inputs": {"x1": x([2, 3, 4, 2])},
     "nodes": [{"op": "cat", "inputs": ["x1"], "attrs": {"axis": 2}, "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "cat_same_value_twice_axis2",
     # The same value in two slots: its gradient is the sum of both slices.
     "inputs": {"x": x([2, 2, 3, 4]), "z": x([2, 2, 1, 4])},
     "nodes": [{"op": "cat", "inputs": ["x", "z", "x"], "attrs": {"axis": 2}, "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "cat_int64_labels_axis1",
     "inputs": {"a": {"draw": ("randint", [2, 3], 10)}, "b": {"draw": ("randint", [2, 4], 10)}},
     "nodes": [{"op": "cat", "inputs": ["a", "b"], "attrs": {"axis": 1}, "outputs": ["y"]},
               {"op": "cat", "inputs": ["b", "a"], "attrs": {"axis": -1}, "outputs": ["z"]}],
     "cotangents": []},
    {"name": "upsample_nearest_up_3x5_to_7x8",
     "inputs": {"x": x([2, 3, 3, 5])},
     "nodes": [{"op": "upsample_nearest2d", "inputs": ["x"], "attrs": {"output_size": [7, 8]},
                "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "upsample_nearest_exact_doubling_4x3_to_8x6",
     "inputs": {"x": x([1, 2, 4, 3])},
     "nodes": [{"op": "upsample_nearest2d", "inputs": ["x"], "attrs": {"output_size": [8, 6]},
                "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "upsample_nearest_down_5x7_to_3x4",
     "inputs": {"x": x([2, 2, 5, 7])},
     "nodes": [{"op": "upsample_nearest2d", "inputs": ["x"], "attrs": {"output_size": [3, 4]},
                "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "upsample_nearest_same_height_wider_4x6_to_4x11",
     "inputs": {"x": x([1, 3, 4, 6])},
     "nodes": [{"op": "upsample_nearest2d", "inputs": ["x"], "attrs": {"output_size": [4, 11]},
                "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "upsample_nearest_float32_scale_3x2_to_2x82",
     # The scale is a float32: output column 41 reads column 0, where floor(41 * 2/82) is 1.
     # One channel: PyTorch 1.13's float64 forward with C > 1 (upsample_generic_Nd_kernel_impl)
     # rounds the product from double instead and reads column 1, while its backward (and its
     # channels-last forward, taken when C == 1) sends column 41's gradient to column 0.
     "inputs": {"x": x([2, 1, 3, 2])},
     "nodes": [{"op": "upsample_nearest2d", "inputs": ["x"], "attrs": {"output_size": [2, 82]},
                "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "upsample_bilinear_up_3x4_to_7x9",
     "inputs": {"x": x([2, 2, 3, 4])},
     "nodes": [{"op": "upsample_bilinear2d", "inputs": ["x"],
                "attrs": {"output_size": [7, 9], "align_corners": False}, "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "upsample_bilinear_up_3x4_to_7x9_align_corners",
     "inputs": {"x": x([2, 2, 3, 4])},
     "nodes": [{"op": "upsample_bilinear2d", "inputs": ["x"],
                "attrs": {"output_size": [7, 9], "align_corners": True}, "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "upsample_bilinear_down_6x7_to_4x3",
     "inputs": {"x": x([1, 3, 6, 7])},
     "nodes": [{"op": "upsample_bilinear2d", "inputs": ["x"],
                "attrs": {"output_size": [4, 3], "align_corners": False}, "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "upsample_bilinear_down_6x7_to_4x3_align_corners",
     "inputs": {"x": x([1, 3, 6, 7])},
     "nodes": [{"op": "upsample_bilinear2d", "inputs": ["x"],
                "attrs": {"output_size": [4, 3], "align_corners": True}, "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "upsample_bilinear_output_height1_align_corners",
     # One output row with align_corners: it reads input row 0 only.
     "inputs": {"x": x([1, 3, 5, 4])},
     "nodes": [{"op": "upsample_bilinear2d", "inputs": ["x"],
                "attrs": {"output_size": [1, 6], "align_corners": True}, "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "upsample_bilinear_output_height1",
     # One output row without align_corners: the middle of the column, (0.5)*5 - 0.5 = row 2.
     "inputs": {"x": x([1, 3, 5, 4])},
     "nodes": [{"op": "upsample_bilinear2d", "inputs": ["x"],
                "attrs": {"output_size": [1, 6], "align_corners": False}, "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "upsample_bilinear_from_single_row_1x4_to_3x7",
     # One input row: both vertical neighbours are row 0.
     "inputs": {"x": x([1, 2, 1, 4])},
     "nodes": [{"op": "upsample_bilinear2d", "inputs": ["x"],
                "attrs": {"output_size": [3, 7], "align_corners": False}, "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "net_conv_maxpool_upsample_nearest_cat_skip_conv",
     # A one-level U-Net: the decoder joins the upsampled bottleneck with the encoder's skip.
     "inputs": {"x": x([2, 2, 6, 8]), "w1": x([4, 2, 3, 3], 1 / 18 ** 0.5),
                "w2": x([3, 8, 3, 3], 1 / 72 ** 0.5), "b2": x([3])},
     "nodes": [
         {"op": "conv2d", "inputs": ["x", "w1"],
          "attrs": {"stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 1},
          "outputs": ["f"]},
         {"op": "relu", "inputs": ["f"], "attrs": {}, "outputs": ["skip"]},
         {"op": "max_pool2d", "inputs": ["skip"],
          "attrs": {"kernel_size": [2, 2], "stride": [2, 2], "padding": [0, 0],
                    "dilation": [1, 1], "ceil_mode": False},
          "outputs": ["m", "i"]},
         {"op": "upsample_nearest2d", "inputs": ["m"], "attrs": {"output_size": [6, 8]},
          "outputs": ["up"]},
         {"op": "cat", "inputs": ["skip", "up"], "attrs": {"axis": 1}, "outputs": ["joined"]},
         {"op": "conv2d", "inputs": ["joined", "w2", "b2"],
          "attrs": {"stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 1},
          "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "net_conv_maxpool_conv_upsample_bilinear_cat_skip_conv",
     # Odd sizes: the 7x5 skip is pooled to 3x2 and the bottleneck resized back to 7x5.
     "inputs": {"x": x([2, 2, 7, 5]), "w1": x([3, 2, 3, 3], 1 / 18 ** 0.5),
                "w2": x([4, 3, 3, 3], 1 / 27 ** 0.5), "w3": x([2, 7, 3, 3], 1 / 63 ** 0.5)},
     "nodes": [
         {"op": "conv2d", "inputs": ["x", "w1"],
          "attrs": {"stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 1},
          "outputs": ["f"]},
         {"op": "relu", "inputs": ["f"], "attrs": {}, "outputs": ["skip"]},
         {"op": "max_pool2d", "inputs": ["skip"],
          "attrs": {"kernel_size": [2, 2], "stride": [2, 2], "padding": [0, 0],
                    "dilation": [1, 1], "ceil_mode": False},
          "outputs": ["m", "i"]},
         {"op": "conv2d", "inputs": ["m", "w2"],
          "attrs": {"stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 1},
          "outputs": ["g"]},
         {"op": "relu", "inputs": ["g"], "attrs": {}, "outputs": ["h"]},
         {"op": "upsample_bilinear2d", "inputs": ["h"],
          "attrs": {"output_size": [7, 5], "align_corners": False}, "outputs": ["up"]},
         {"op": "cat", "inputs": ["skip", "up"], "attrs": {"axis": 1}, "outputs": ["joined"]},
         {"op": "conv2d", "inputs": ["joined", "w3"],
          "attrs": {"stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 1},
          "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "batch_norm_training_n2c3h3w5",
     # The running buffers are inputs without gradient; in training they do not change y.
     "inputs": {"x": x([2, 3, 3, 5]), "weight": x([3]), "bias": x([3]),
                "running_mean": {"draw": ("randn", [3]), "requires_grad": False},
                "running_var": {"draw": ("rand", [3], 0.5, 2.0), "requires_grad": False}},
     "nodes": [{"op": "batch_norm2d",
                "inputs": ["x", "weight", "bias", "running_mean", "running_var"],
                "attrs": {"training": True, "momentum": 0.1, "eps": 1e-05}, "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "batch_norm_eval_running_stats",
     "inputs": {"x": x([2, 3, 4, 3]), "weight": x([3]), "bias": x([3]),
                "running_mean": {"draw": ("randn", [3], 0.5), "requires_grad": False},
                "running_var": {"draw": ("rand", [3], 0.5, 2.0), "requires_grad": False}},
     "nodes": [{"op": "batch_norm2d",
                "inputs": ["x", "weight", "bias", "running_mean", "running_var"],
                "attrs": {"training": False, "momentum": 0.1, "eps": 1e-05}, "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "batch_norm_training_eps0p001",
     # Small values: the variance is comparable to eps.
     "inputs": {"x": x([3, 2, 2, 4], 0.05), "weight": x([2]), "bias": x([2]),
                "running_mean": {"draw": ("randn", [2]), "requires_grad": False},
                "running_var": {"draw": ("rand", [2], 0.5, 2.0), "requires_grad": False}},
     "nodes": [{"op": "batch_norm2d",
                "inputs": ["x", "weight", "bias", "running_mean", "running_var"],
                "attrs": {"training": True, "momentum": 0.1, "eps": 0.001}, "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "batch_norm_training_momentum0p5",
     "inputs": {"x": x([4, 2, 3, 2]), "weight": x([2]), "bias": x([2]),
                "running_mean": {"draw": ("randn", [2]), "requires_grad": False},
                "running_var": {"draw": ("rand", [2], 0.5, 2.0), "requires_grad": False}},
     "nodes": [{"op": "batch_norm2d",
                "inputs": ["x", "weight", "bias", "running_mean", "running_var"],
                "attrs": {"training": True, "momentum": 0.5, "eps": 1e-05}, "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "net_conv_batch_norm_relu_maxpool",
     # The classic block: an unbiased convolution, batch statistics, relu, pooling.
     "inputs": {"x": x([2, 3, 6, 5]), "w": x([4, 3, 3, 3], 1 / 27 ** 0.5),
                "gamma": x([4]), "beta": x([4]),
                "running_mean": {"draw": ("randn", [4]), "requires_grad": False},
                "running_var": {"draw": ("rand", [4], 0.5, 2.0), "requires_grad": False}},
     "nodes": [
         {"op": "conv2d", "inputs": ["x", "w"],
          "attrs": {"stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 1},
          "outputs": ["f"]},
         {"op": "batch_norm2d", "inputs": ["f", "gamma", "beta", "running_mean", "running_var"],
          "attrs": {"training": True, "momentum": 0.1, "eps": 1e-05}, "outputs": ["n"]},
         {"op": "relu", "inputs": ["n"], "attrs": {}, "outputs": ["r"]},
         {"op": "max_pool2d", "inputs": ["r"],
          "attrs": {"kernel_size": [2, 2], "stride": [2, 2], "padding": [0, 0],
                    "dilation": [1, 1], "ceil_mode": False},
          "outputs": ["m", "i"]}],
     "cotangents": ["m"]},
    {"name": "dropout_p0p5_seed7",
     "inputs": {"x": x([2, 3, 4, 5])},
     "nodes": [{"op": "dropout", "inputs": ["x"],
                "attrs": {"p": 0.5, "training": True, "seed": 7}, "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "dropout_p0p25_seed123_2d",
     "inputs": {"x": x([5, 7])},
     "nodes": [{"op": "dropout", "inputs": ["x"],
                "attrs": {"p": 0.25, "training": True, "seed": 123}, "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "dropout_eval_identity",
     "inputs": {"x": x([2, 3, 4])},
     "nodes": [{"op": "dropout", "inputs": ["x"],
                "attrs": {"p": 0.5, "training": False, "seed": 7}, "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "dropout_p0_identity",
     "inputs": {"x": x([3, 4])},
     "nodes": [{"op": "dropout", "inputs": ["x"],
                "attrs": {"p": 0.0, "training": True, "seed": 5}, "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "dropout_p1_all_zeros",
     "inputs": {"x": x([2, 5])},
     "nodes": [{"op": "dropout", "inputs": ["x"],
                "attrs": {"p": 1.0, "training": True, "seed": 9}, "outputs": ["y"]}],
     "cotangents": ["y"]},
    {"name": "net_linear_relu_dropout_linear_xent",
     # A classifier's hidden layer with dropout in training.
     "inputs": {"x": x([4, 6]), "w1": x([8, 6], 1 / 6 ** 0.5), "b1": x([8]),
                "w2": x([3, 8], 1 / 8 ** 0.5), "labels": {"draw": ("randint", [4], 3)}},
     "nodes": [
         {"op": "linear", "inputs": ["x", "w1", "b1"], "attrs": {}, "outputs": ["h"]},
         {"op": "relu", "inputs": ["h"], "attrs": {}, "outputs": ["r"]},
         {"op": "dropout", "inputs": ["r"], "attrs": {"p": 0.5, "training": True, "seed": 42},
          "outputs": ["d"]},
         {"op": "linear", "inputs": ["d", "w2"], "attrs": {}, "outputs": ["logits"]},
         {"op": "softmax_xent", "inputs": ["logits", "labels"],
          "attrs": {"reduction": "mean", "ignore_index": -100, "label_smoothing": 0.0},
          "outputs": ["loss"]}],
     "cotangents": ["loss"]},
    {"name": "xent_weight_ignored_label_mean",
     # Class weights: the mean divides by the weights of the counted labels; sample 2 is ignored.
     "inputs": {"logits": x([5, 4]), "labels": {"draw": ("labels", [5], 4, -100, [2])},
                "weight": {"draw": ("rand", [4], 0.5, 2.0), "requires_grad": False}},
     "nodes": [{"op": "softmax_xent", "inputs": ["logits", "labels", "weight"],
                "attrs": {"reduction": "mean", "ignore_index": -100, "label_smoothing": 0.0},
                "outputs": ["loss"]}],
     "cotangents": ["loss"]},
    {"name": "xent_weight_ignored_label_sum",
     "inputs": {"logits": x([5, 4]), "labels": {"draw": ("labels", [5], 4, -100, [2])},
                "weight": {"draw": ("rand", [4], 0.5, 2.0), "requires_grad": False}},
     "nodes": [{"op": "softmax_xent", "inputs": ["logits", "labels", "weight"],
                "attrs": {"reduction": "sum", "ignore_index": -100, "label_smoothing": 0.0},
                "outputs": ["loss"]}],
     "cotangents": ["loss"]},
    {"name": "xent_weight_ignored_label_none",
     # The ignored sample's loss is 0 and its logits get no gradient.
     "inputs": {"logits": x([5, 4]), "labels": {"draw": ("labels", [5], 4, -100, [2])},
                "weight": {"draw": ("rand", [4], 0.5, 2.0), "requires_grad": False}},
     "nodes": [{"op": "softmax_xent", "inputs": ["logits", "labels", "weight"],
                "attrs": {"reduction": "none", "ignore_index": -100, "label_smoothing": 0.0},
                "outputs": ["loss"]}],
     "cotangents": ["loss"]},
    {"name": "xent_smoothing0p1_spatial_ignore255_mean",
     # Label smoothing without weights; 4 of the 30 pixels are ignored (void label 255), and
     # both terms of the mean divide by the 26 counted pixels.
     "inputs": {"logits": x([2, 3, 3, 5]),
                "labels": {"draw": ("labels", [2, 3, 5], 3, 255, [4, 11, 12, 25])}},
     "nodes": [{"op": "softmax_xent", "inputs": ["logits", "labels"],
                "attrs": {"reduction": "mean", "ignore_index": 255, "label_smoothing": 0.1},
                "outputs": ["loss"]}],
     "cotangents": ["loss"]},
    {"name": "xent_weight_smoothing0p2_spatial_mean",
     # Weights and smoothing together, 2 pixels ignored: the smoothing term is weighted by
     # every class's weight and divided, like the label term, by the counted labels' weights.
     "inputs": {"logits": x([2, 4, 5, 3]),
                "labels": {"draw": ("labels", [2, 5, 3], 4, -100, [3, 20])},
                "weight": {"draw": ("rand", [4], 0.5, 2.0), "requires_grad": False}},
     "nodes": [{"op": "softmax_xent", "inputs": ["logits", "labels", "weight"],
                "attrs": {"reduction": "mean", "ignore_index": -100, "label_smoothing": 0.2},
                "outputs": ["loss"]}],
     "cotangents": ["loss"]},
    {"name": "xent_prob_weight_smoothing0p15_spatial_mean_label_grad",
     # Probability labels: smoothed, weighted, the mean divides by the 2*4*3 pixels.
     "inputs": {"logits": x([2, 3, 4, 3]), "labels": {"draw": ("probs", [2, 3, 4, 3])},
                "weight": {"draw": ("rand", [3], 0.5, 2.0), "requires_grad": False}},
     "nodes": [{"op": "softmax_xent", "inputs": ["logits", "labels", "weight"],
                "attrs": {"reduction": "mean", "ignore_index": -100, "label_smoothing": 0.15},
                "outputs": ["loss"]}],
     "cotangents": ["loss"]},
    {"name": "xent_prob_weight_smoothing0p15_none_label_grad",
     "inputs": {"logits": x([5, 4]), "labels": {"draw": ("probs", [5, 4])},
                "weight": {"draw": ("rand", [4], 0.5, 2.0), "requires_grad": False}},
     "nodes": [{"op": "softmax_xent", "inputs": ["logits", "labels", "weight"],
                "attrs": {"reduction": "none", "ignore_index": -100, "label_smoothing": 0.15},
                "outputs": ["loss"]}],
     "cotangents": ["loss"]},
    {"name": "xent_rank3_logits_2x4x5_mean",
     # A sequence: classes on axis 1, one label per position.
     "inputs": {"logits": x([2, 4, 5]), "labels": {"draw": ("randint", [2, 5], 4)}},
     "nodes": [{"op": "softmax_xent", "inputs": ["logits", "labels"],
                "attrs": {"reduction": "mean", "ignore_index": -100, "label_smoothing": 0.0},
                "outputs": ["loss"]}],
     "cotangents": ["loss"]},
    {"name": "xent_rank5_logits_2x3x2x3x2_mean",
     # A volume: [N, C, D, H, W] logits, [N, D, H, W] labels.
     "inputs": {"logits": x([2, 3, 2, 3, 2]), "labels": {"draw": ("randint", [2, 2, 3, 2], 3)}},
     "nodes": [{"op": "softmax_xent", "inputs": ["logits", "labels"],
                "attrs": {"reduction": "mean", "ignore_index": -100, "label_smoothing": 0.0},
                "outputs": ["loss"]}],
     "cotangents": ["loss"]},
    {"name": "net_conv_relu_conv_xent_median_frequency_weight",
     # A SegNet-like segmentation head: per-pixel logits for 3 classes of unequal frequency,
     # weighted by median frequency balancing computed from the case's own labels. The rare
     # class 2 appears in the first image only (2 of its 30 pixels): freq = 42/60, 16/60, 2/30,
     # so the weights are 8/21, 1 and 4.
     "inputs": {"x": x([2, 3, 5, 6]), "w1": x([4, 3, 3, 3], 1 / 27 ** 0.5), "b1": x([4]),
                "w2": x([3, 4, 3, 3], 1 / 36 ** 0.5), "b2": x([3]),
                "labels": {"draw": ("categorical", [2, 5, 6], [0.62, 0.33, 0.05])},
                "weight": {"draw": ("median_frequency", "labels", 3), "requires_grad": False}},
     "nodes": [
         {"op": "conv2d", "inputs": ["x", "w1", "b1"],
          "attrs": {"stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 1},
          "outputs": ["f"]},
         {"op": "relu", "inputs": ["f"], "attrs": {}, "outputs": ["r"]},
         {"op": "conv2d", "inputs": ["r", "w2", "b2"],
          "attrs": {"stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 1},
          "outputs": ["logits"]},
         {"op": "softmax_xent", "inputs": ["logits", "labels", "weight"],
          "attrs": {"reduction": "mean", "ignore_index": -100, "label_smoothing": 0.0},
          "outputs": ["loss"]}],
     "cotangents": ["loss"]},
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..",
                                                      "tests", "data", "reference"))
    parser.add_argument("names", nargs="*", help="only these cases (default: all)")
    args = parser.parse_args()
    torch.set_default_dtype(torch.float64)
    os.makedirs(args.out, exist_ok=True)
    written = 0
    for case in CASES:
        if args.names and case["name"] not in args.names:
            continue
        path = os.path.join(args.out, case["name"] + ".json")
        with open(path, "w") as f:
            f.write(dump(run_case(case)) + "\n")
        written += 1
    print(f"wrote {written} cases to {os.path.normpath(args.out)}", file=sys.stderr)


if __name__ == "__main__":
    main()
