// Build the snippet and its add-on from src/ and print each one's raw, gzip and brotli sizes:
//   src/dni.js   -> dni_server/static/dni.js        (every page; budget 2,500 B gzipped)
//   src/touch.js -> dni_server/static/dni-touch.js  (loaded by dni.js once it shows a swapped
//                                                    number; budget 700 B gzipped)
//   src/callback.js -> dni_server/static/dni-callback.js  (loaded by dni('callback'), web
//                                                    callbacks; budget 950 B gzipped)
//
//   node build.mjs           write the minified files
//   node build.mjs --check   build in memory and fail if either differs from the committed file
//
// esbuild drops the unit-test hook and refuses syntax newer than ES5; terser then minifies (it
// packs these files about 2% smaller than esbuild's minifier, and the budget is tight). The
// output is deterministic (pinned tools, fixed settings) so CI can rebuild it and fail on any
// diff. Both the sources and the outputs must parse as ES5 (es-check).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';
import { transformSync } from 'esbuild';
import { minify } from 'terser';
import { writeOrCheck } from '../tools/build_output.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const staticDir = join(here, '..', 'dni_server', 'static');
// source, output, budget (bytes gzipped): tests/test_size.py holds the same figures.
const FILES = [
  ['dni.js', 'dni.js', 2500],
  ['touch.js', 'dni-touch.js', 700],
  ['callback.js', 'dni-callback.js', 950],
];

function es5(files) {
  const bin = join(here, 'node_modules', 'es-check', 'lib', 'cli', 'index.js');
  try {
    execFileSync(process.execPath, [bin, 'es5', ...files, '--silent'], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    process.stderr.write(String(err.stdout) + String(err.stderr));
    throw new Error('ES5 check failed (es-check es5)');
  }
}

let over = false;
for (const [source, output, budget] of FILES) {
  const srcPath = join(here, 'src', source);
  const src = readFileSync(srcPath, 'utf8');
  const lowered = transformSync(src, {
    target: 'es5', // refuses ES2015+ syntax it cannot lower, on top of es-check
    dropLabels: ['DEV'], // unit-test hook, see tests/js/
    legalComments: 'none',
  }).code;
  const { code } = await minify(lowered, {
    ecma: 5,
    compress: { passes: 2 },
    mangle: true,
    format: { ascii_only: true, comments: false },
  });

  const tmp = mkdtempSync(join(tmpdir(), 'dni-build-'));
  try {
    const built = join(tmp, output);
    writeFileSync(built, code);
    es5([srcPath, built]);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }

  const raw = Buffer.from(code);
  const gz = gzipSync(raw, { level: 9 }).length;
  const br = brotliCompressSync(raw, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }).length;
  console.log(`${output}  raw ${raw.length} B  gzip ${gz} B  brotli ${br} B  (budget ${budget} B gzip)`);

  writeOrCheck(join(staticDir, output), code, 'run "npm run build" in snippet/ and commit the result');
  if (gz > budget) {
    console.error(`${output} over budget: ${gz} B gzip > ${budget} B`);
    over = true;
  }
}
if (over) process.exit(1);
