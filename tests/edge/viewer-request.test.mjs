// The edge function (as the operator renders it) under the CloudFront Functions harness:
// browsers x widths x DPRs x explicit formats x hostile inputs, for several stack configs.
// Run: node --test tests/edge/   (see render.mjs for which operator binary renders the code)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runViewerRequest, buildEvent, Refused, FunctionError, MAX_CODE_BYTES } from './harness.mjs';
import { renderCode, REPO } from './render.mjs';
import { BROWSERS } from './profiles.mjs';

const ID = '0123456789abcdef0123456789abcdef';
const SW = 1500; // source width of the test image
const EXT = { webp: 'webp', jpeg: 'jpg', png: 'png', avif: 'avif' };

const CONFIGS = {
  default: { formats: ['webp', 'jpeg', 'png'] },
  avif: { formats: ['webp', 'jpeg', 'png', 'avif'] },
  noJpeg: { formats: ['webp', 'png'] },
  avifPng: { formats: ['avif', 'png'] },
};

// What each browser gets per config (Accept negotiation only).
const EXPECTED_FORMAT = {
  default: ['webp', 'webp', 'webp', 'webp', 'webp', 'jpeg'],
  avif: ['avif', 'avif', 'avif', 'avif', 'webp', 'jpeg'],
  noJpeg: ['webp', 'webp', 'webp', 'webp', 'webp', 'png'],
  avifPng: ['avif', 'avif', 'avif', 'avif', 'png', 'png'],
};

// [query, extra headers, expected width variant (0 = full size)] for a 1500 px source and the
// default widths 320, 640, 1280, 1920.
const WIDTH_CASES = [
  ['', {}, 0],
  ['w=300', {}, 320],
  ['w=320', {}, 320],
  ['w=321', {}, 640],
  ['w=640&dpr=1', {}, 640],
  ['w=400&dpr=1.5', {}, 640],
  ['w=400&dpr=2', {}, 1280],
  ['w=200&dpr=3', {}, 640],
  ['w=700&dpr=2', {}, 0], // 1400: 1920 is not narrower than the source
  ['w=1300', {}, 0],
  ['w=2000', {}, 0],
  ['w=99999999999999999999', {}, 0], // clamped to 8192
  ['w=400&dpr=100', {}, 1280], // dpr clamped to 3
  ['w=400&dpr=0.5', {}, 640], // dpr clamped to 1
  ['w=400&dpr=-1', {}, 640],
  ['dpr=2', {}, 0], // dpr alone: no width asked
  ['', { 'sec-ch-width': '700' }, 1280],
  ['', { width: '300' }, 320],
  ['', { 'sec-ch-width': '300', width: '1000' }, 320],
  ['w=100', { 'sec-ch-width': '1000' }, 320], // ?w= wins over hints
  ['', { 'sec-ch-width': 'abc' }, 0], // malformed hint ignored
  ['w=300&v=2&utm_source=x', {}, 320], // other parameters ignored (and dropped)
];

function run(code, uri, query = '', headers = {}) {
  return runViewerRequest(code, buildEvent({ uri, query, headers }));
}

function expectRewrite(out, format, width, stem = 'photo') {
  assert.equal(out.kind, 'request', JSON.stringify(out.result));
  const suffix = width ? `-w${width}` : '';
  assert.equal(out.result.uri, `/${format}/${stem}-${ID}${suffix}.${EXT[format]}`);
  assert.equal(out.origin, `s3-${format}`);
  assert.deepEqual(out.result.querystring, {}); // the cache key is the rendition alone
}

function expect400(out) {
  assert.equal(out.kind, 'response');
  assert.equal(out.result.statusCode, 400);
  assert.equal(out.result.statusDescription, 'Bad Request');
  assert.equal(out.result.headers['cache-control'].value, 'no-store');
  assert.match(out.result.headers['content-type'].value, /^text\/plain/);
  assert.match(out.result.body.data, /^400 Bad Request: /);
  assert.equal(out.origin, null);
}

for (const [config, { formats }] of Object.entries(CONFIGS)) {
  test(`${config}: every browser profile x width x DPR`, () => {
    const code = renderCode({ formats });
    BROWSERS.forEach((b, i) => {
      const format = EXPECTED_FORMAT[config][i];
      for (const [query, hints, width] of WIDTH_CASES) {
        for (const uri of [`/i/${SW}/photo-${ID}`, `/i/${SW}/photo-${ID}.jpg`]) {
          const out = run(code, uri, query, { accept: b.accept, ...hints });
          try {
            expectRewrite(out, format, width);
          } catch (e) {
            e.message = `${b.name} ${uri}?${query} ${JSON.stringify(hints)}: ${e.message}`;
            throw e;
          }
        }
      }
    });
  });
}

test('without the source width the full size is served, whatever the width asked', () => {
  const code = renderCode();
  for (const [query, hints] of WIDTH_CASES) {
    expectRewrite(run(code, `/i/photo-${ID}`, query, { accept: BROWSERS[0].accept, ...hints }), 'webp', 0);
    expectRewrite(run(code, `/i/photo-${ID}.png`, query, hints), 'jpeg', 0);
  }
});

test('never a width the processor did not write: configured widths at or above the source', () => {
  const code = renderCode();
  // A 640 px source has only the 320 variant.
  for (const [w, want] of [[100, 320], [320, 320], [321, 0], [640, 0], [5000, 0]]) {
    expectRewrite(run(code, `/i/640/photo-${ID}`, `w=${w}`), 'jpeg', want);
  }
  // A 320 px source has none; a 16 px one neither.
  for (const sw of [320, 16, 1]) expectRewrite(run(code, `/i/${sw}/photo-${ID}`, 'w=10'), 'jpeg', 0);
  // Other configured widths.
  const custom = renderCode({ widths: [400, 800, 3000], formats: ['webp'] });
  expectRewrite(run(custom, `/i/4000/photo-${ID}`, 'w=801'), 'webp', 3000);
  expectRewrite(run(custom, `/i/3000/photo-${ID}`, 'w=801'), 'webp', 0);
  expectRewrite(run(custom, `/i/4000/photo-${ID}`, 'w=100&dpr=3'), 'webp', 400);
});

test('an explicit ?f= wins when enabled, is ignored when disabled, refused when unknown', () => {
  const std = renderCode();
  const avif = renderCode({ formats: ['webp', 'jpeg', 'png', 'avif'] });
  const uri = `/i/${SW}/photo-${ID}`;
  for (const b of BROWSERS) {
    const h = { accept: b.accept };
    expectRewrite(run(std, uri, 'f=png', h), 'png', 0);
    expectRewrite(run(std, uri, 'f=jpeg&w=300', h), 'jpeg', 320);
    expectRewrite(run(std, uri, 'f=jpg', h), 'jpeg', 0);
    expectRewrite(run(std, uri, 'f=WEBP', h), 'webp', 0);
    expectRewrite(run(avif, uri, 'f=avif&w=600', h), 'avif', 640);
    // avif not enabled on std: negotiated as without f.
    const negotiated = run(std, uri, '', h).result.uri;
    assert.equal(run(std, uri, 'f=avif', h).result.uri, negotiated, b.name);
    for (const bad of ['f=gif', 'f=', 'f=svg', 'f=png%00', 'f=../png']) expect400(run(std, uri, bad, h));
  }
  // jpeg disabled: ?f=jpeg negotiates (curl gets png).
  expectRewrite(run(renderCode({ formats: ['webp', 'png'] }), uri, 'f=jpeg', { accept: '*/*' }), 'png', 0);
});

test('Accept q-values: q=0 refuses a type, wildcards do not count as AVIF or WebP', () => {
  const code = renderCode({ formats: ['webp', 'jpeg', 'png', 'avif'] });
  const uri = `/i/${SW}/photo-${ID}`;
  for (const [accept, want] of [
    ['image/avif;q=0,image/webp', 'webp'],
    ['image/avif; q=0.0, image/webp;q=0', 'jpeg'],
    ['IMAGE/AVIF', 'avif'],
    ['image/webp;q=0.1', 'webp'],
    ['image/avif;q=abc,image/webp', 'webp'],
    ['image/*', 'jpeg'],
    ['*/*;q=0.8', 'jpeg'],
    ['', 'jpeg'],
  ]) {
    expectRewrite(run(code, uri, '', { accept }), want, 0);
  }
  // Accept sent twice (multiValue): both count.
  expectRewrite(run(code, uri, '', { accept: ['text/html', 'image/avif'] }), 'avif', 0);
  // Only avif and webp enabled, neither accepted: the first enabled (webp).
  expectRewrite(run(renderCode({ formats: ['avif', 'webp'] }), uri, '', { accept: '*/*' }), 'webp', 0);
  expectRewrite(run(renderCode({ formats: ['avif'] }), uri, '', { accept: '*/*' }), 'avif', 0);
});

test('stems: the encoded spelling is kept canonical and round-trips to the stored key', () => {
  const code = renderCode();
  const cases = [
    ['holiday%20photo', 'holiday%20photo'],
    ['%C3%9Cn%C3%AFc%C3%B8d%C3%A9%20%E2%9C%93', '%C3%9Cn%C3%AFc%C3%B8d%C3%A9%20%E2%9C%93'],
    ['%c3%a9t%c3%a9', '%C3%A9t%C3%A9'], // lower-case hex: one cache entry per stem
    ['caf%C3%A9', 'caf%C3%A9'],
    ['a(1)!*', 'a%281%29%21%2A'],
    ['.hidden', '.hidden'],
    ['..', '..'],
    ['a..b', 'a..b'],
    ['x~y_z-1.2', 'x~y_z-1.2'],
    ['100%25', '100%25'],
    ['a%2Bb', 'a%2Bb'],
    ['a+b', 'a%2Bb'],
    ['my-photo-2024', 'my-photo-2024'],
  ];
  for (const [raw, canonical] of cases) {
    const out = run(code, `/i/${SW}/${raw}-${ID}`, 'w=300');
    expectRewrite(out, 'jpeg', 320, canonical);
  }
  // The longest stem the processor writes (969 bytes, every byte escaped) passes; one more
  // byte is refused.
  const max = '%C3%A9'.repeat(484) + 'x'; // 969 bytes
  expectRewrite(run(code, `/i/${SW}/${max}-${ID}`), 'jpeg', 0, max);
  expect400(run(code, `/i/${SW}/${max}x-${ID}`));
});

test('hostile or malformed input gets a clean 400, never an origin', () => {
  const code = renderCode();
  const ok = `/i/${SW}/photo-${ID}`;
  const uris = [
    '/',
    '/i/',
    '/i',
    `/webp/photo-${ID}.webp`,
    `/i/${SW}/photo`, // no id
    `/i/${SW}/photo-${ID.slice(1)}`, // short id
    `/i/${SW}/photo-${ID.toUpperCase()}`,
    `/i/${SW}/photo-${ID}.gif`,
    `/i/${SW}/photo-${ID}/x`,
    `/i/${SW}/-${ID}`, // empty stem
    `/i/0/photo-${ID}`, // width with a leading zero / zero
    `/i/0${SW}/photo-${ID}`,
    `/i/-5/photo-${ID}`,
    `/i/12345678/photo-${ID}`, // 8 digits
    `/i/abc/photo-${ID}`,
    `/i/${SW}/../photo-${ID}`,
    `/i/../webp/photo-${ID}`,
    `/i/./photo-${ID}`,
    `/i/${SW}/./photo-${ID}`,
    `/i/${SW}/..`,
    `/i/${SW}/a\\b-${ID}`,
    `/i/${SW}\\photo-${ID}`,
    `/i/${SW}/a%5cb-${ID}`,
    `/i/${SW}/a%5Cb-${ID}`,
    `/i/${SW}/a%2fb-${ID}`,
    `/i/${SW}/..%2F..%2Fwebp%2Fx-${ID}`,
    `/i/${SW}/%2e%2e-${ID}`,
    `/i/${SW}/a%2Eb-${ID}`,
    `/i/${SW}/a%00b-${ID}`,
    `/i/${SW}/a%0Ab-${ID}`,
    `/i/${SW}/a%7Fb-${ID}`,
    `/i/${SW}/a%C2%85b-${ID}`, // C1 control (NEL)
    `/i/${SW}/a\u0001b-${ID}`,
    `/i/${SW}/a b-${ID}`,
    `/i/${SW}/a%-${ID}`, // malformed escape
    `/i/${SW}/a%zz-${ID}`,
    `/i/${SW}/a%C3-${ID}`, // truncated UTF-8
    `/i/${SW}/a%FF-${ID}`, // not UTF-8
    `/i/${SW}/${'x'.repeat(970)}-${ID}`, // stem longer than any stored key's
    `/i/${SW}/${'%41'.repeat(1100)}-${ID}`, // URI over 3072 bytes
    '/i/' + 'a/'.repeat(2000),
  ];
  for (const uri of uris) {
    try {
      expect400(run(code, uri, 'w=300'));
    } catch (e) {
      e.message = `${uri.slice(0, 80)}: ${e.message}`;
      throw e;
    }
  }
  const queries = [
    'w=abc', 'w=-1', 'w=0', 'w=00', 'w=1.5', 'w=', 'w=1e3', 'w=%31', 'w=+5', 'w=0x10',
    'dpr=abc', 'dpr=', 'dpr=NaN', 'dpr=Infinity', 'dpr=1e2', 'dpr=2x', 'w=300&dpr=..',
    'f=gif',
  ];
  for (const q of queries) {
    try {
      expect400(run(code, ok, q));
    } catch (e) {
      e.message = `?${q}: ${e.message}`;
      throw e;
    }
  }
  // Sanity: the same request without the bad part is served.
  expectRewrite(run(code, ok, 'w=300'), 'jpeg', 320);
});

test('every rendered config fits CloudFront and the harness limits', () => {
  const widest = Array.from({ length: 16 }, (_, i) => 8192 - i);
  const code = renderCode({ widths: widest, formats: ['webp', 'jpeg', 'png', 'avif'] });
  assert.ok(Buffer.byteLength(code) <= MAX_CODE_BYTES, `${Buffer.byteLength(code)} bytes`);
  expectRewrite(run(code, `/i/9000/photo-${ID}`, 'w=8180', { accept: '*/*' }), 'jpeg', 8180);
});

// --- The harness refuses what cloudfront-js-2.0 refuses (each rule, and a baseline). ---

const MINIMAL = `import cf from 'cloudfront';
function handler(event) {
  const r = event.request;
  r.uri = '/webp/x.webp';
  cf.selectRequestOriginById('s3-webp');
  return r;
}
`;
const ev = () => buildEvent({ uri: '/i/x' });
const withBody = (body) => `import cf from 'cloudfront';\nfunction handler(event) {\n${body}\n  return event.request;\n}\n`;

test('harness baseline: a minimal valid function runs', () => {
  const out = runViewerRequest(MINIMAL, ev());
  assert.equal(out.result.uri, '/webp/x.webp');
  assert.equal(out.origin, 's3-webp');
  // Without the cf import, and returning a response, also fine.
  const resp = 'function handler(event) { return {statusCode: 302, headers: {location: {value: "/"}}}; }';
  assert.equal(runViewerRequest(resp, ev()).result.statusCode, 302);
});

// rule -> [code, what the refusal must say]
const REFUSALS = {
  'code over 10 KB': [MINIMAL + `// ${'x'.repeat(MAX_CODE_BYTES)}\n`, /over 10240/],
  'require(': [withBody("  const c = require('crypto');"), /require\( is not allowed/],
  'require( of cloudfront': [withBody("  const c = require('cloudfront');"), /require\( is not allowed/],
  'another import': [`import crypto from 'crypto';\n${MINIMAL.split('\n').slice(1).join('\n')}`, /only import allowed/],
  'the cf import not on the first line': [`// header\n${MINIMAL}`, /only import allowed/],
  'a second import': [MINIMAL + "import qs from 'querystring';\n", /only import allowed/],
  'dynamic import(': [withBody("  import('cloudfront');"), /dynamic import/],
  setTimeout: [withBody('  setTimeout(() => {}, 1);'), /setTimeout is not available/],
  setInterval: [withBody('  setInterval(() => {}, 1);'), /setInterval is not available/],
  setImmediate: [withBody('  setImmediate(() => {});'), /setImmediate is not available/],
  queueMicrotask: [withBody('  queueMicrotask(() => {});'), /queueMicrotask is not available/],
  fetch: [withBody("  fetch('https://example.com');"), /fetch is not available/],
  XMLHttpRequest: [withBody('  new XMLHttpRequest();'), /XMLHttpRequest is not available/],
  process: [withBody('  const e = process.env;'), /process is not available/],
  eval: [withBody("  eval('1 + 1');"), /Code generation from strings disallowed/],
  'new Function': [withBody("  new Function('return 1')();"), /Code generation from strings disallowed/],
  'for-of': [withBody('  for (const k of [1]) { k; }'), /for-of/],
  'a promise result': ['async function handler(event) { return event.request; }', /promise/],
  'no handler': ['function other(event) { return event.request; }', /no function handler/],
  'a request without uri': ['function handler(event) { return {method: "GET"}; }', /uri starting with/],
  'a relative uri': ['function handler(event) { event.request.uri = "x"; return event.request; }', /uri starting with/],
  'a changed method': ['function handler(event) { event.request.method = "POST"; return event.request; }', /read-only/],
  'an upper-case header name': ['function handler(event) { event.request.headers["X-A"] = {value: "1"}; return event.request; }', /lower case/],
  'a header without value': ['function handler(event) { event.request.headers.x = "1"; return event.request; }', /must be \{value/],
  'a bad statusCode': ['function handler(event) { return {statusCode: "400"}; }', /bad statusCode/],
  'a bad body encoding': ['function handler(event) { return {statusCode: 400, body: {data: "x", encoding: "utf8"}}; }', /body must be/],
  updateRequestOrigin: [withBody('  cf.updateRequestOrigin({domainName: "evil.example.com"});'), /not used by this stack/],
  'an origin selected twice': [withBody("  cf.selectRequestOriginById('s3-webp'); cf.selectRequestOriginById('s3-png');"), /more than once/],
  'an origin with a response': ["import cf from 'cloudfront';\nfunction handler(event) { cf.selectRequestOriginById('s3-webp'); return {statusCode: 400}; }", /generated response/],
  'an endless loop': [withBody('  while (true) {}'), /timed out/],
  'a sloppy-mode global': [withBody('  leaked = 1;'), /leaked is not defined/],
};

for (const [rule, [code, says]] of Object.entries(REFUSALS)) {
  test(`harness refuses: ${rule}`, () => {
    assert.throws(() => runViewerRequest(code, ev()), (e) => {
      assert.ok(e instanceof Refused || e instanceof FunctionError, `${e}`);
      assert.match(e.message, says);
      return true;
    });
  });
}

test('harness refuses an origin id the distribution does not have', () => {
  assert.doesNotThrow(() => runViewerRequest(MINIMAL, ev(), { originIds: ['s3-webp'] }));
  assert.throws(() => runViewerRequest(MINIMAL, ev(), { originIds: ['s3-png'] }), /no origin with id s3-webp/);
});

test('the event has the documented CloudFront Functions shape', () => {
  const e = buildEvent({
    uri: '/i/a',
    query: 'w=1&w=2&flag&dpr=2',
    headers: { Accept: 'image/webp', 'X-Dup': ['a', 'b'], Cookie: 'a=1; b=2; a=3' },
  });
  assert.equal(e.version, '1.0');
  assert.equal(e.context.eventType, 'viewer-request');
  assert.equal(typeof e.context.distributionDomainName, 'string');
  assert.equal(typeof e.viewer.ip, 'string');
  assert.equal(e.request.method, 'GET');
  assert.deepEqual(e.request.querystring, {
    w: { value: '1', multiValue: [{ value: '1' }, { value: '2' }] },
    flag: { value: '' },
    dpr: { value: '2' },
  });
  assert.deepEqual(e.request.headers, {
    accept: { value: 'image/webp' },
    'x-dup': { value: 'a', multiValue: [{ value: 'a' }, { value: 'b' }] },
  });
  assert.deepEqual(e.request.cookies, {
    a: { value: '1', multiValue: [{ value: '1' }, { value: '3' }] },
    b: { value: '2' },
  });
  // A duplicated ?w= uses the first value.
  expectRewrite(run(renderCode(), `/i/${SW}/photo-${ID}`, 'w=300&w=2000'), 'jpeg', 320);
});

test('CLI: prints uri, origin and status as JSON', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'edge-'));
  const file = path.join(dir, 'code.js');
  writeFileSync(file, renderCode({ formats: ['webp', 'jpeg', 'png', 'avif'] }));
  const cli = (req) => JSON.parse(execFileSync('node', [path.join(REPO, 'tests/edge/harness.mjs'), file, JSON.stringify(req)], { encoding: 'utf8' }));
  assert.deepEqual(
    cli({ uri: `/i/${SW}/photo-${ID}`, query: 'w=400&dpr=2', headers: { accept: BROWSERS[0].accept } }),
    { uri: `/avif/photo-${ID}-w1280.avif`, origin: 's3-avif', status: null },
  );
  assert.deepEqual(cli({ uri: `/i/${SW}/photo-${ID}`, query: 'w=abc' }), { uri: null, origin: null, status: 400 });
  // Refused code: exit status 2.
  writeFileSync(file, REFUSALS.setTimeout[0]);
  assert.throws(() => execFileSync('node', [path.join(REPO, 'tests/edge/harness.mjs'), file, '{"uri":"/i/x"}'], { stdio: 'pipe' }), (e) => e.status === 2);
});
