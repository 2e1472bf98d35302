// What both front-end builds (snippet/build.mjs, dni_server/dashboard/ui/build.mjs) do with
// their output: write it, or with --check compare it with the committed file, so that CI
// fails when someone changed a source and did not commit the rebuilt file.
import { readFileSync, writeFileSync } from 'node:fs';

// Write `code` to `outPath`, or with --check exit 1 when the committed file differs.
export function writeOrCheck(outPath, code, rebuildHint) {
  if (process.argv.includes('--check')) {
    let committed = '';
    try {
      committed = readFileSync(outPath, 'utf8');
    } catch {}
    if (committed !== code) {
      console.error(`${outPath} is stale: ${rebuildHint}`);
      process.exit(1);
    }
    console.log('committed build is up to date');
  } else {
    writeFileSync(outPath, code);
    console.log(`wrote ${outPath}`);
  }
}
