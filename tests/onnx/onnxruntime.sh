#!/usr/bin/env bash
# Runs test folders of deltagraph's ONNX exports in onnxruntime (tools/onnxruntime/run-test.js).
# Optional: exits 77 (ctest: skipped) where node or the onnxruntime-node package is not
# installed (tools/install-onnxruntime installs it).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
if ! command -v node >/dev/null || [ ! -d "$root/tools/onnxruntime/node_modules/onnxruntime-node" ]; then
  echo "node or onnxruntime-node is not installed (tools/install-onnxruntime): skipped"
  exit 77
fi
exec node "$root/tools/onnxruntime/run-test.js" "$@"
