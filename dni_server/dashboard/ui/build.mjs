// Build dni_server/static/dashboard.js (Chart.js plus src/dashboard.js) with esbuild.
//
//   node build.mjs           write the minified bundle
//   node build.mjs --check   build in memory and fail if it differs from the committed file
//
// Pinned tools and fixed settings make the output deterministic, so CI rebuilds it and fails
// on any diff (the same approach as snippet/build.mjs).
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';
import { writeOrCheck } from '../../../tools/build_output.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const outPath = join(here, '..', '..', 'static', 'dashboard.js');

const result = await build({
  entryPoints: [join(here, 'src', 'dashboard.js')],
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['es2019'],
  legalComments: 'eof', // keep Chart.js's MIT notice in the bundle
  charset: 'ascii',
  write: false,
  absWorkingDir: here,
});
const code = result.outputFiles[0].text;
const raw = Buffer.from(code);
console.log(`dashboard.js  raw ${raw.length} B  gzip ${gzipSync(raw, { level: 9 }).length} B`);

writeOrCheck(outPath, code, 'run "npm run build" in dni_server/dashboard/ui/ and commit it');
