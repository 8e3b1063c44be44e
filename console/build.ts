import { copyFile, mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { build } from 'esbuild';

/** The repository root: builds run from it so the output never depends on the caller's cwd. */
const root = resolve(import.meta.dirname, '..');
export const CONSOLE_SRC = join(root, 'console', 'src');
export const CONSOLE_DIST = join(root, 'console', 'dist');

/**
 * Bundles console/src into `outdir`: index.html and, under console/, app.js, app.css and favicon.svg. The
 * output is a pure function of the sources and the locked esbuild version, so a test can
 * rebuild it and demand the committed bundle be byte for byte the same.
 */
export async function buildConsole(outdir: string = CONSOLE_DIST): Promise<void> {
  await mkdir(join(outdir, 'console'), { recursive: true });
  await build({
    absWorkingDir: root,
    entryPoints: [join(CONSOLE_SRC, 'main.ts')],
    outfile: join(outdir, 'console', 'app.js'),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    legalComments: 'none',
    charset: 'utf8',
    logLevel: 'warning',
    tsconfig: join(root, 'console', 'tsconfig.json'),
  });
  await copyFile(join(CONSOLE_SRC, 'index.html'), join(outdir, 'index.html'));
  for (const asset of ['app.css', 'favicon.svg'])
    await copyFile(join(CONSOLE_SRC, asset), join(outdir, 'console', asset));
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  await buildConsole(process.argv[2] ? resolve(process.argv[2]) : CONSOLE_DIST);
}
