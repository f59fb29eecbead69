// The function code exactly as the operator deploys it: rendered by the operator binary
// (`operator edge-function --widths .. --formats ..`, the same code path as the component).
//
// Which binary: $IMAGESTACK_OPERATOR_BIN when set (./scripts/test sets it to the one it just
// built, so the Node tests cost no cargo call); otherwise `cargo run -q -p imagestack-operator`
// (builds the operator first if needed).
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const cache = new Map();

export function renderCode({ widths = [320, 640, 1280, 1920], formats = ['webp', 'jpeg', 'png'] } = {}) {
  const args = ['edge-function', '--widths', widths.join(','), '--formats', formats.join(',')];
  const key = args.join(' ');
  if (!cache.has(key)) {
    const bin = process.env.IMAGESTACK_OPERATOR_BIN;
    const code = bin
      ? execFileSync(bin, args, { encoding: 'utf8' })
      : execFileSync('cargo', ['run', '-q', '-p', 'imagestack-operator', '--', ...args], {
        cwd: REPO, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'],
      });
    cache.set(key, code);
  }
  return cache.get(key);
}
