#!/usr/bin/env node
// Runs ONNX test folders (model.onnx + test_data_set_*/input_*.pb, output_*.pb: the layout of
// ONNX's conformance tests, which `dg export --test-data` writes) in onnxruntime's CPU runtime and
// compares its outputs with the stored ones: |a - b| <= tol * (1 + |b|), tol 1e-5 by default.
// Prints one line per folder with the largest absolute and relative differences; exits 1 if any
// output is out of tolerance, 2 on a usage or load error.
//
//   node tools/onnxruntime/run-test.js [--tol 1e-5] DIR...
//
// onnxruntime-node comes from tools/install-onnxruntime (npm, into tools/onnxruntime/node_modules).
'use strict';
const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');

// ---- a TensorProto reader (the fields test tensors use) ----------------------------------------
function readVarint(buf, pos) {
  let value = 0n, shift = 0n;
  for (;;) {
    if (pos.i >= buf.length) throw new Error('truncated varint');
    const b = buf[pos.i++];
    value |= BigInt(b & 0x7f) << shift;
    if (!(b & 0x80)) return value;
    shift += 7n;
  }
}
function signed64(v) { return v >= (1n << 63n) ? v - (1n << 64n) : v; }

function parseTensor(buf) {
  const t = { dims: [], dataType: 0, raw: null, floats: [], doubles: [], int64s: [], int32s: [], name: '' };
  const pos = { i: 0 };
  while (pos.i < buf.length) {
    const key = Number(readVarint(buf, pos));
    const field = key >> 3, wire = key & 7;
    if (wire === 0) {
      const v = readVarint(buf, pos);
      if (field === 1) t.dims.push(Number(signed64(v)));
      else if (field === 2) t.dataType = Number(v);
      else if (field === 5) t.int32s.push(Number(BigInt.asIntN(32, v)));
      else if (field === 7) t.int64s.push(signed64(v));
    } else if (wire === 2) {
      const len = Number(readVarint(buf, pos));
      const bytes = buf.subarray(pos.i, pos.i + len);
      pos.i += len;
      const packed = { i: 0 };
      if (field === 1) while (packed.i < bytes.length) t.dims.push(Number(signed64(readVarint(bytes, packed))));
      else if (field === 4) for (let k = 0; k < len; k += 4) t.floats.push(bytes.readFloatLE(k));
      else if (field === 10) for (let k = 0; k < len; k += 8) t.doubles.push(bytes.readDoubleLE(k));
      else if (field === 7) while (packed.i < bytes.length) t.int64s.push(signed64(readVarint(bytes, packed)));
      else if (field === 5) while (packed.i < bytes.length) t.int32s.push(Number(BigInt.asIntN(32, readVarint(bytes, packed))));
      else if (field === 8) t.name = bytes.toString('utf8');
      else if (field === 9) t.raw = Buffer.from(bytes);
    } else if (wire === 5) {
      if (field === 4) t.floats.push(buf.readFloatLE(pos.i));
      pos.i += 4;
    } else if (wire === 1) {
      if (field === 10) t.doubles.push(buf.readDoubleLE(pos.i));
      pos.i += 8;
    } else {
      throw new Error(`unexpected wire type ${wire}`);
    }
  }
  const count = t.dims.reduce((a, b) => a * b, 1);
  const copy = (Type, size) => {
    const out = new Type(count);
    if (t.raw) {
      if (t.raw.length !== count * size) throw new Error('raw_data size does not match dims');
      const view = new Type(t.raw.buffer.slice(t.raw.byteOffset, t.raw.byteOffset + t.raw.length));
      out.set(view);
    }
    return out;
  };
  switch (t.dataType) {
    case 1: { const d = copy(Float32Array, 4); if (!t.raw) d.set(t.floats); return new ort.Tensor('float32', d, t.dims); }
    case 11: { const d = copy(Float64Array, 8); if (!t.raw) d.set(t.doubles); return new ort.Tensor('float64', d, t.dims); }
    case 7: { const d = copy(BigInt64Array, 8); if (!t.raw) d.set(t.int64s); return new ort.Tensor('int64', d, t.dims); }
    case 6: { const d = copy(Int32Array, 4); if (!t.raw) d.set(t.int32s); return new ort.Tensor('int32', d, t.dims); }
    default: throw new Error(`element type ${t.dataType} is not read here`);
  }
}

function numbered(dir, prefix) {
  const out = [];
  for (let k = 0; fs.existsSync(path.join(dir, `${prefix}_${k}.pb`)); ++k) out.push(path.join(dir, `${prefix}_${k}.pb`));
  return out;
}

async function runFolder(dir, tol) {
  const session = await ort.InferenceSession.create(path.join(dir, 'model.onnx'));
  let worstAbs = 0, worstRel = 0, bad = 0, count = 0;
  const sets = fs.readdirSync(dir).filter((d) => d.startsWith('test_data_set_')).sort();
  if (sets.length === 0) throw new Error(`no test_data_set_* in ${dir}`);
  for (const set of sets) {
    const feeds = {};
    numbered(path.join(dir, set), 'input').forEach((file, k) => {
      feeds[session.inputNames[k]] = parseTensor(fs.readFileSync(file));
    });
    const results = await session.run(feeds);
    numbered(path.join(dir, set), 'output').forEach((file, k) => {
      const expected = parseTensor(fs.readFileSync(file));
      const got = results[session.outputNames[k]];
      if (JSON.stringify(got.dims) !== JSON.stringify(expected.dims))
        throw new Error(`${set}/output_${k}: shape [${got.dims}] instead of [${expected.dims}]`);
      for (let i = 0; i < got.data.length; ++i) {
        const a = Number(got.data[i]), b = Number(expected.data[i]);
        const abs = Number.isNaN(a) && Number.isNaN(b) ? 0 : Math.abs(a - b);
        worstAbs = Math.max(worstAbs, abs);
        worstRel = Math.max(worstRel, abs / Math.max(Math.abs(b), 1e-12));
        if (!(abs <= tol * (1 + Math.abs(b))) && !(Number.isNaN(a) && Number.isNaN(b))) ++bad;
        ++count;
      }
    });
  }
  return { worstAbs, worstRel, bad, count };
}

async function main() {
  const args = process.argv.slice(2);
  let tol = 1e-5;
  const dirs = [];
  for (let i = 0; i < args.length; ++i) {
    if (args[i] === '--tol') tol = Number(args[++i]);
    else dirs.push(args[i]);
  }
  if (dirs.length === 0) {
    console.error('usage: node tools/onnxruntime/run-test.js [--tol 1e-5] DIR...');
    process.exit(2);
  }
  let failed = 0;
  for (const dir of dirs) {
    try {
      const r = await runFolder(dir, tol);
      const verdict = r.bad === 0 ? 'pass' : 'FAIL';
      if (r.bad) ++failed;
      console.log(`${verdict}  ${dir}: ${r.count} values, max |a-b| ${r.worstAbs.toExponential(2)}, ` +
                  `max relative ${r.worstRel.toExponential(2)}${r.bad ? `, ${r.bad} out of tolerance` : ''} ` +
                  `(onnxruntime ${ort.env.versions ? ort.env.versions.common : ''})`);
    } catch (e) {
      ++failed;
      console.log(`FAIL  ${dir}: ${e.message}`);
    }
  }
  process.exit(failed ? 1 : 0);
}
main();
