// Runs ONNX models in ONNX Runtime for Node with graph optimizations disabled, so Q/DQ nodes
// execute exactly as written (onnx_qdq.md §9). Used by //exporters:onnx_ort_test.
//   node run_ort.js <model.onnx> <input.bin> <d0,d1,...> <output.bin> [<model> <input> <dims> <output> ...]
// input.bin: raw little-endian float32 of shape d0 x d1 x ...; output.bin gets the model's first
// output as raw float32, output.bin.<k> its output k (k >= 1, the graph's output order).
// onnxruntime-node is loaded from $QAT_ORT_DIR/node_modules.
'use strict';
const fs = require('fs');
const path = require('path');

async function main(args) {
  const dir = process.env.QAT_ORT_DIR;
  if (!dir) throw new Error('QAT_ORT_DIR is not set');
  const ort = require(path.join(dir, 'node_modules', 'onnxruntime-node'));
  if (args.length === 0 || args.length % 4 !== 0) {
    throw new Error('usage: run_ort.js <model.onnx> <input.bin> <d0,d1,...> <output.bin> ...');
  }
  for (let i = 0; i < args.length; i += 4) {
    const [model, input, dims, output] = args.slice(i, i + 4);
    const session = await ort.InferenceSession.create(model, {
      graphOptimizationLevel: 'disabled',
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
    });
    const bytes = fs.readFileSync(input);
    const data = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
    const shape = dims.split(',').map(Number);
    const feeds = {[session.inputNames[0]]: new ort.Tensor('float32', data, shape)};
    const results = await session.run(feeds);
    session.outputNames.forEach((name, k) => {
      const y = results[name];
      const file = k === 0 ? output : output + '.' + k;
      fs.writeFileSync(file, Buffer.from(y.data.buffer, y.data.byteOffset, y.data.byteLength));
    });
  }
}

main(process.argv.slice(2)).catch((e) => {
  console.error('run_ort.js: ' + (e && e.stack ? e.stack : e));
  process.exit(1);
});
