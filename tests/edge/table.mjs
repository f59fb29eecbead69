// Prints the README's "what each browser gets" tables (README "Edge URLs"), from the harness
// running the function as the operator renders it. readme.test.mjs checks the README holds
// exactly this output.   node tests/edge/table.mjs
import { fileURLToPath } from 'node:url';
import { runViewerRequest, buildEvent } from './harness.mjs';
import { renderCode } from './render.mjs';
import { BROWSERS } from './profiles.mjs';

const ID = '0123456789abcdef0123456789abcdef';
const SOURCE_WIDTH = 1500;
const REQUESTS = ['', '?w=400', '?w=400&dpr=2', '?w=1000&dpr=2', '?f=png&w=300'];

// One cell: the rendition served, e.g. "webp 640" or "jpeg full (1500)".
function cell(code, accept, query) {
  const event = buildEvent({ uri: `/i/${SOURCE_WIDTH}/photo-${ID}`, query: query.slice(1), headers: { accept } });
  const { result, kind } = runViewerRequest(code, event);
  if (kind !== 'request') return `${result.statusCode}`;
  const m = /^\/(\w+)\/photo-[0-9a-f]{32}(?:-w(\d+))?\.\w+$/.exec(result.uri);
  return m ? `${m[1]} ${m[2] || `full (${SOURCE_WIDTH})`}` : result.uri;
}

export function table(formats) {
  const code = renderCode({ widths: [320, 640, 1280, 1920], formats });
  const head = ['Client (Accept)', ...REQUESTS.map((q) => `\`${q || '(no query)'}\``)];
  const rows = [head, head.map(() => '---')];
  for (const b of BROWSERS) {
    rows.push([b.name, ...REQUESTS.map((q) => cell(code, b.accept, q))]);
  }
  return rows.map((r) => `| ${r.join(' | ')} |`).join('\n');
}

export function tables() {
  return [
    `Formats \`webp, jpeg, png\` (the default), widths 320, 640, 1280, 1920, a ${SOURCE_WIDTH} px image (\`/i/${SOURCE_WIDTH}/photo-<id>\`):`,
    '',
    table(['webp', 'jpeg', 'png']),
    '',
    'The same with `avif` added to the formats:',
    '',
    table(['webp', 'jpeg', 'png', 'avif']),
  ].join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  console.log(tables());
}
