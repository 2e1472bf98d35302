// Build dni_server/static/dni.js from src/dni.js and print its raw, gzip and brotli sizes.
//
//   node build.mjs           write the minified file
//   node build.mjs --check   build in memory and fail if it differs from the committed file
//
// esbuild drops the unit-test hook and refuses syntax newer than ES5; terser then minifies (it
// packs this file about 2% smaller than esbuild's minifier, and the budget is tight). The output
// is deterministic (pinned tools, fixed settings) so CI can rebuild it and fail on any diff.
// Both the source and the output must parse as ES5 (es-check).
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
const srcPath = join(here, 'src', 'dni.js');
const outPath = join(here, '..', 'dni_server', 'static', 'dni.js');
const BUDGET_GZIP = 2500;

function es5(files) {
  const bin = join(here, 'node_modules', 'es-check', 'lib', 'cli', 'index.js');
  try {
    execFileSync(process.execPath, [bin, 'es5', ...files, '--silent'], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    process.stderr.write(String(err.stdout) + String(err.stderr));
    throw new Error('ES5 check failed (es-check es5)');
  }
}

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
  const built = join(tmp, 'dni.js');
  writeFileSync(built, code);
  es5([srcPath, built]);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

const raw = Buffer.from(code);
const gz = gzipSync(raw, { level: 9 }).length;
const br = brotliCompressSync(raw, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }).length;
console.log(`dni.js  raw ${raw.length} B  gzip ${gz} B  brotli ${br} B  (budget ${BUDGET_GZIP} B gzip)`);

writeOrCheck(outPath, code, 'run "npm run build" in snippet/ and commit the result');
if (gz > BUDGET_GZIP) {
  console.error(`over budget: ${gz} B gzip > ${BUDGET_GZIP} B`);
  process.exit(1);
}
