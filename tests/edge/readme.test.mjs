// README "Edge URLs" shows the harness's own output (never stale): the text between the
// edge-table markers must equal what table.mjs prints.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { tables } from './table.mjs';
import { REPO } from './render.mjs';

test('the README table is the one the harness generates', () => {
  const readme = readFileSync(path.join(REPO, 'README.md'), 'utf8');
  const m = /<!-- edge-table:begin[^>]*-->\n([\s\S]*?)\n<!-- edge-table:end -->/.exec(readme);
  assert.ok(m, 'README.md has no edge-table markers');
  assert.equal(m[1], tables(), 'regenerate: node tests/edge/table.mjs');
});
