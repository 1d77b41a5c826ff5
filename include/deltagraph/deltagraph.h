// deltagraph: one include for the whole public API, layer by layer (the property harness,
// deltagraph/testing/properties.h, is separate: it needs RapidCheck).
#pragma once

// core: tensors, Vars and the tape, the op registry, the reverse-mode engine
#include "deltagraph/core/anomaly.h"
#include "deltagraph/core/autodiff.h"
#include "deltagraph/core/checkpoint.h"
#include "deltagraph/core/error.h"
#include "deltagraph/core/forward.h"
#include "deltagraph/core/graph.h"
#include "deltagraph/core/op.h"
#include "deltagraph/core/parallel.h"
#include "deltagraph/core/profiler.h"
#include "deltagraph/core/shape.h"
#include "deltagraph/core/tape.h"
#include "deltagraph/core/tensor.h"
#include "deltagraph/core/var.h"
// ops: the typed op functions and kernel switches
#include "deltagraph/ops/kernels.h"
#include "deltagraph/ops/ops.h"
// io: files
#include "deltagraph/io/idx.h"
#include "deltagraph/io/image.h"
#include "deltagraph/io/safetensors.h"
// train: layers, initialisers, optimisers, checkpoints, data
#include "deltagraph/train/checkpoint.h"
#include "deltagraph/train/data.h"
#include "deltagraph/train/init.h"
#include "deltagraph/train/nn.h"
#include "deltagraph/train/optim.h"
#include "deltagraph/train/progress.h"
// diagnostics: gradient checks, reference cases, graphs
#include "deltagraph/diagnostics/cases.h"
#include "deltagraph/diagnostics/check.h"
#include "deltagraph/diagnostics/dot.h"
#include "deltagraph/onnx/onnx.h"
