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
    from torch import nn
except ImportError:
    print("PyTorch is not installed (apt-get install python3-torch): skipped")
    sys.exit(77)

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


class Classifier(nn.Module):
    """examples/classifier.h in PyTorch, module for module under the same names."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1, bias=False)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1, bias=False)
        self.bn1, self.bn2, self.bn3 = nn.BatchNorm2d(32), nn.BatchNorm2d(64), nn.BatchNorm2d(128)
        self.fc1 = nn.Linear(128 * 3 * 3, 256)
        self.fc2 = nn.Linear(256, 10)
        self.drop1, self.drop2 = nn.Dropout(0.25), nn.Dropout(0.25)

    def forward(self, x):
        relu, pool = torch.relu, nn.functional.max_pool2d
        h = relu(self.bn1(pool(self.conv1(x), 2)))
        h = relu(self.bn2(pool(self.conv2(h), 2)))
        h = relu(self.bn3(pool(self.conv3(h), 2)))
        h = relu(self.fc1(self.drop1(torch.flatten(h, 1))))
        return self.fc2(self.drop2(h))


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
