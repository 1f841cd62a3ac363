// Step 2 of the emoji dataset: image latents.
//
// Runs the MobileNetV2 network that ships inside the npm package `nsfwjs`
// (dist/models/mobilenet_v2: a Keras LayersModel, 224x224 input, uint8-
// quantised weights stored as base64 inside CommonJS modules) with
// @tensorflow/tfjs on the wasm backend, and writes the 1280-d output of the
// layer `flatten_1` -- the global 7x7 average pool of `out_relu` flattened,
// i.e. the pooled MobileNetV2 features just before nsfwjs' dense classifier
// head (dense_1 256 -> dense_2 128 -> dense_3 5 softmax).
//
// Preprocessing is that of nsfwjs' NSFWJS.infer for this model: RGB pixels
// as float32 divided by 255 (range [0, 1]), 224x224 (no resize needed: the
// rendered images are already 224x224).
//
// Nothing is fetched: the model files are read from node_modules through
// an IO handler of our own, and the wasm binaries are loaded from
// node_modules/@tensorflow/tfjs-backend-wasm/dist.
//
// Usage: node encode_images.mjs WORK_DIR
//   reads  WORK_DIR/pairs.tsv, WORK_DIR/images_u8.bin (N x 224 x 224 x 3)
//   writes WORK_DIR/image_f32.bin (N x 1280 float32, little-endian)
//          WORK_DIR/image_stats.json (backend, layer, nsfwjs class histogram)

import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

const SIZE = 224;
const FEATURE_LAYER = 'flatten_1';
const FEATURE_DIM = 1280;
const BATCH = 32;
const CLASSES = ['Drawing', 'Hentai', 'Neutral', 'Porn', 'Sexy'];

const work = process.argv[2];
if (!work) {
  console.error('usage: node encode_images.mjs WORK_DIR');
  process.exit(2);
}

// --- model files from node_modules -----------------------------------------
const nodeModules = path.join(here, 'node_modules');
const nsfwjsDir = path.join(nodeModules, 'nsfwjs');
const modelDir = path.join(nsfwjsDir, 'dist', 'models', 'mobilenet_v2');

// The bundled model files are UMD/CommonJS modules: model.min.js exports the
// model.json object, group1-shard1of1.min.js exports the weight shard as a
// base64 string.
function fileIOHandler(dir) {
  return {
    async load() {
      const modelJson = require(path.join(dir, 'model.min.js'));
      const weightSpecs = [];
      const parts = [];
      for (const group of modelJson.weightsManifest) {
        for (const p of group.paths) {
          const b64 = require(path.join(dir, `${p}.min.js`));
          if (typeof b64 !== 'string') {
            throw new Error(`unexpected weight shard format in ${p}.min.js`);
          }
          parts.push(Buffer.from(b64, 'base64'));
        }
        weightSpecs.push(...group.weights);
      }
      const all = Buffer.concat(parts);
      const weightData = all.buffer.slice(all.byteOffset,
                                          all.byteOffset + all.byteLength);
      return {
        modelTopology: modelJson.modelTopology,
        weightSpecs,
        weightData,
      };
    },
  };
}

// --- wasm backend from node_modules ----------------------------------------
const wasmDir = path.join(nodeModules, '@tensorflow', 'tfjs-backend-wasm',
                          'dist') + path.sep;
setWasmPaths(wasmDir);
if (!(await tf.setBackend('wasm'))) {
  throw new Error('could not initialise the tfjs wasm backend');
}
await tf.ready();

const model = await tf.loadLayersModel(fileIOHandler(modelDir));
const featLayer = model.getLayer(FEATURE_LAYER);
const featShape = featLayer.outputShape;
if (featShape.length !== 2 || featShape[1] !== FEATURE_DIM) {
  throw new Error(`${FEATURE_LAYER} has shape ${featShape}, want [null, 1280]`);
}
// One model with two outputs: the pooled features and nsfwjs' own softmax
// (the latter only for a sanity histogram of predicted classes).
const encoder = tf.model({
  inputs: model.inputs,
  outputs: [featLayer.output, model.outputs[0]],
});

// --- data -------------------------------------------------------------------
const n = fs.readFileSync(path.join(work, 'pairs.tsv'), 'utf8')
  .split('\n').filter((l) => l.length > 0).length;
const pix = fs.readFileSync(path.join(work, 'images_u8.bin'));
const per = SIZE * SIZE * 3;
if (pix.length !== n * per) {
  throw new Error(`images_u8.bin has ${pix.length} bytes, want ${n * per}`);
}

const out = new Float32Array(n * FEATURE_DIM);
const hist = new Array(CLASSES.length).fill(0);
const t0 = Date.now();
for (let s = 0; s < n; s += BATCH) {
  const b = Math.min(BATCH, n - s);
  const u8 = new Uint8Array(pix.buffer, pix.byteOffset + s * per, b * per);
  const [feat, probs] = tf.tidy(() => {
    const x = tf.tensor4d(u8, [b, SIZE, SIZE, 3], 'int32')
      .toFloat()
      .div(tf.scalar(255));
    return encoder.predict(x);
  });
  out.set(await feat.data(), s * FEATURE_DIM);
  const top = await probs.argMax(1).data();
  for (const k of top) hist[k] += 1;
  tf.dispose([feat, probs]);
  if ((s / BATCH) % 10 === 0) {
    process.stdout.write(`encode_images: ${s + b}/${n}\n`);
  }
}
const secs = (Date.now() - t0) / 1000;

fs.writeFileSync(path.join(work, 'image_f32.bin'), Buffer.from(out.buffer));
const stats = {
  tfjs: tf.version.tfjs,
  backend: tf.getBackend(),
  model: 'nsfwjs dist/models/mobilenet_v2',
  layer: FEATURE_LAYER,
  dim: FEATURE_DIM,
  preprocessing: 'RGB float32 / 255',
  n,
  seconds: secs,
  nsfwjs_top1_histogram: Object.fromEntries(CLASSES.map((c, i) => [c, hist[i]])),
};
fs.writeFileSync(path.join(work, 'image_stats.json'),
                 JSON.stringify(stats, null, 1));
console.log(`encode_images: ${n} images -> ${n}x${FEATURE_DIM} (${secs.toFixed(1)} s, ` +
            `backend ${stats.backend}); nsfwjs top-1: ` +
            JSON.stringify(stats.nsfwjs_top1_histogram));
