#!/usr/bin/env python3
"""ONNX's own checker (python3-onnx) with full shape inference on models deltagraph exported.

Exits 77 (ctest: skipped) where python3-onnx is missing, 1 if a model is refused."""
import sys

try:
    import onnx
except ImportError:
    print("python3-onnx is not installed: skipped")
    sys.exit(77)

failed = 0
for path in sys.argv[1:]:
    model = onnx.load(path)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # the checker raises several exception types
        print(f"REFUSED {path}: {e}")
        failed += 1
        continue
    opset = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    print(f"accepted {path}: opset {opset[0]}, IR version {model.ir_version}, "
          f"{len(model.graph.node)} nodes, {len(model.graph.initializer)} initializers")
sys.exit(1 if failed else 0)
