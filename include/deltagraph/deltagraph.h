// deltagraph: one include for the whole public API.
#pragma once

#include "deltagraph/autodiff.h"
#include "deltagraph/cases.h"
#include "deltagraph/check.h"
#include "deltagraph/dot.h"
#include "deltagraph/error.h"
#include "deltagraph/graph.h"
#include "deltagraph/op.h"
#include "deltagraph/ops.h"
#include "deltagraph/parallel.h"
#include "deltagraph/shape.h"
#include "deltagraph/tape.h"
#include "deltagraph/tensor.h"
#include "deltagraph/var.h"
