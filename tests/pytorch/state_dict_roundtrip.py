#!/usr/bin/python3
"""A deltagraph checkpoint of a batch-norm model loads in PyTorch with load_state_dict and gives
the same logits within 1e-5, and PyTorch's state_dict loads in deltagraph the same way.

    state_dict_roundtrip.py BINARY DIR

BINARY is the state_dict_roundtrip program (its C++ half). Exits 77 (CTest's "skipped") when
PyTorch is not installed: the check is optional, run where Debian's python3-torch is.
"""
import json
import os
import struct
import subprocess
import sys

try:
    import torch
except ImportError:
    print("PyTorch is not installed (apt-get install python3-torch): skipped")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_classifier import Classifier  # noqa: E402  (examples/classifier.h in PyTorch)

DTYPES = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64}
NAMES = {v: k for k, v in DTYPES.items()}


def load_safetensors(path):
    """The safetensors format by hand (8-byte header length, JSON header, raw data), so that the
    check needs nothing beyond PyTorch."""
    with open(path, "rb") as f:
        data = f.read()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    body = data[8 + length:]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        t = torch.frombuffer(bytearray(body[begin:end]), dtype=DTYPES[entry["dtype"]])
        tensors[name] = t.reshape(entry["shape"]).clone()
    return tensors


def save_safetensors(path, tensors):
    header, chunks, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in tensors.items():
        raw = t.detach().contiguous().numpy().tobytes()
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def main():
    binary, folder = sys.argv[1], sys.argv[2]
    os.makedirs(folder, exist_ok=True)

    # deltagraph -> PyTorch
    subprocess.run([binary, "save", folder], check=True)
    model = Classifier()
    model.load_state_dict(load_safetensors(os.path.join(folder, "dg_model.safetensors")))
    model.eval()
    io = load_safetensors(os.path.join(folder, "dg_io.safetensors"))
    with torch.no_grad():
        difference = (model(io["images"]) - io["logits"]).abs().max().item()
    print(f"deltagraph's checkpoint in PyTorch: logits differ by at most {difference:.3g}")
    if not difference <= 1e-5:
        sys.exit(1)

    # PyTorch -> deltagraph: fresh weights, running statistics moved by training-mode passes
    torch.manual_seed(3)
    model = Classifier()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 1, 28, 28) + 0.5)
    model.eval()
    images = torch.randn(6, 1, 28, 28)
    with torch.no_grad():
        logits = model(images)
    save_safetensors(os.path.join(folder, "torch_model.safetensors"), model.state_dict())
    save_safetensors(os.path.join(folder, "torch_io.safetensors"),
                     {"images": images, "logits": logits})
    sys.exit(subprocess.run([binary, "check", folder]).returncode)


if __name__ == "__main__":
    main()
