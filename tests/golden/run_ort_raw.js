// Runs ONNX models with any number of float32 graph inputs in ONNX Runtime for Node: CPU
// provider, graph optimizations disabled, one intra-op and one inter-op thread. Used by
// tests/golden/gen_mlas_order_fixtures.py (exporters/testdata/run_ort.js feeds one input only).
//   node run_ort_raw.js <jobs.json>
// jobs.json: [{"model": "m.onnx", "inputs": {"<name>": ["<file.bin>", [d0, d1, ...]], ...},
//              "output": "<y.bin>"}, ...]
// file.bin: raw little-endian float32; y.bin gets the model's first output as raw float32.
// onnxruntime-node is loaded from $QAT_ORT_DIR/node_modules.
'use strict';
const fs = require('fs');
const path = require('path');

async function main(args) {
  const dir = process.env.QAT_ORT_DIR;
  if (!dir) throw new Error('QAT_ORT_DIR is not set');
  if (args.length !== 1) throw new Error('usage: run_ort_raw.js <jobs.json>');
  const ort = require(path.join(dir, 'node_modules', 'onnxruntime-node'));
  for (const job of JSON.parse(fs.readFileSync(args[0], 'utf8'))) {
    const session = await ort.InferenceSession.create(job.model, {
      executionProviders: ['cpu'],
      graphOptimizationLevel: 'disabled',
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
    });
    const feeds = {};
    for (const [name, [file, shape]] of Object.entries(job.inputs)) {
      const bytes = fs.readFileSync(file);
      const data = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
      feeds[name] = new ort.Tensor('float32', data, shape);
    }
    const results = await session.run(feeds);
    const y = results[session.outputNames[0]];
    fs.writeFileSync(job.output, Buffer.from(y.data.buffer, y.data.byteOffset, y.data.byteLength));
  }
}

main(process.argv.slice(2)).catch((e) => {
  console.error('run_ort_raw.js: ' + (e && e.stack ? e.stack : e));
  process.exit(1);
});
