// A local stand-in for CloudFront Functions (runtime cloudfront-js-2.0, viewer request), for
// testing the stack's edge function (operator/src/edge/viewer-request.js as rendered by the
// operator). Node >= 18 built-ins only.
//
//   import { runViewerRequest, buildEvent } from './harness.mjs';
//   const { result, origin } = runViewerRequest(code, buildEvent({ uri, query, headers }));
//
// CLI (used by the Rust full-stack e2e on the code read back from the emulator):
//   node tests/edge/harness.mjs <code-file> '<request-json>'
//   request JSON: {"uri": "/i/800/a-<id>", "query": "w=640&dpr=2", "headers": {"accept": "..."},
//                  "method": "GET"}        (query, headers, method optional)
//   prints one line {"uri": <rewritten uri or null>, "origin": <selected origin id or null>,
//                    "status": <status code of a generated response, or null>}
//   exit 0; exit 2 with the reason on stderr when the harness refuses the code or it throws.
//
// What it refuses (as CloudFront does, or stricter where noted):
// - code over 10 240 bytes (CloudFront's function size limit);
// - `import` other than exactly `import cf from 'cloudfront';` on the first line, dynamic
//   `import(`, any `require(` (CloudFront 2.0 knows a few modules; this stack uses none);
// - `for (... of ...)`: not among cloudfront-js-2.0's statements;
// - eval and new Function (code generation from strings is off, as CloudFront restricts it);
// - at run time, touching require, process, fetch, XMLHttpRequest, setTimeout, setInterval,
//   setImmediate or queueMicrotask throws (no modules, no network, no timers);
// - a handler that is not a function, returns a promise, or returns anything but a valid
//   request (string uri starting with "/", method unchanged) or a response (integer
//   statusCode 100-599, optional string statusDescription, {value} headers, body a string or
//   {data, encoding: text|base64}).
// `cf.selectRequestOriginById(id)` records the id (with `originIds` given, an unknown id
// throws, as CloudFront fails such a request); `cf.updateRequestOrigin` and the other origin
// helpers throw "not used by this stack".
import vm from 'node:vm';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const MAX_CODE_BYTES = 10240;
export const IMPORT_LINE = "import cf from 'cloudfront';";
const FORBIDDEN_GLOBALS = [
  'require', 'process', 'fetch', 'XMLHttpRequest', 'setTimeout', 'setInterval',
  'setImmediate', 'queueMicrotask', 'clearTimeout', 'clearInterval', 'module', 'exports',
];

export class Refused extends Error {}
// The code threw (CloudFront would answer the viewer 503): the code's own error, re-raised in
// this realm with its message.
export class FunctionError extends Error {}

function inSandbox(what, f) {
  try {
    return f();
  } catch (e) {
    if (e instanceof Refused) throw e;
    throw new FunctionError(`${what}: ${e && e.message ? e.message : String(e)}`);
  }
}

// Static checks; returns the code with the import line blanked (line numbers kept).
export function checkCode(code) {
  if (typeof code !== 'string') throw new Refused('code must be a string');
  const bytes = Buffer.byteLength(code, 'utf8');
  if (bytes > MAX_CODE_BYTES) throw new Refused(`code is ${bytes} bytes, over ${MAX_CODE_BYTES}`);
  const lines = code.split('\n');
  const usesCf = lines[0].trim() === IMPORT_LINE;
  const body = usesCf ? ['', ...lines.slice(1)].join('\n') : code;
  if (/\bimport\s*\(/.test(body)) throw new Refused('dynamic import( is not supported');
  if (/\bimport\b/.test(body)) {
    throw new Refused(`the only import allowed is "${IMPORT_LINE}" on the first line`);
  }
  if (/\brequire\s*\(/.test(body)) throw new Refused('require( is not allowed');
  if (/\bfor\s*\(\s*(?:const|let|var)?\s*[\w$]+\s+of\b/.test(body)) {
    throw new Refused('for-of is not a cloudfront-js-2.0 statement');
  }
  return body;
}

function refusingGlobal(ctx, name) {
  Object.defineProperty(ctx, name, {
    get() {
      throw new Refused(`${name} is not available in cloudfront-js-2.0`);
    },
    configurable: false,
  });
}

function makeCf(state, originIds) {
  const notUsed = (name) => () => {
    throw new Refused(`cf.${name} is not used by this stack`);
  };
  return Object.freeze({
    selectRequestOriginById(id) {
      if (typeof id !== 'string' || id === '') throw new TypeError('origin id must be a string');
      if (originIds && !originIds.includes(id)) throw new Error(`no origin with id ${id}`);
      state.origin = id;
      state.originCalls += 1;
    },
    updateRequestOrigin: notUsed('updateRequestOrigin'),
    createRequestOriginGroup: notUsed('createRequestOriginGroup'),
  });
}

// The CloudFront Functions event for a viewer request, as AWS documents it ("CloudFront
// Functions event structure"): query parameters and headers as {value} (duplicates add
// multiValue), header names lower-cased, cookies taken out of the headers. Query values are
// passed as they appear in the URL (not decoded).
export function buildEvent({ uri, query = '', headers = {}, method = 'GET', ip = '198.51.100.11' }) {
  const querystring = {};
  for (const part of query.replace(/^\?/, '').split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const name = eq < 0 ? part : part.slice(0, eq);
    const value = eq < 0 ? '' : part.slice(eq + 1);
    addValue(querystring, name, value);
  }
  const hs = {};
  const cookies = {};
  for (const [rawName, raw] of Object.entries(headers)) {
    const name = rawName.toLowerCase();
    for (const value of Array.isArray(raw) ? raw : [raw]) {
      if (name === 'cookie') {
        for (const c of String(value).split(';')) {
          const eq = c.indexOf('=');
          if (eq > 0) addValue(cookies, c.slice(0, eq).trim(), c.slice(eq + 1).trim());
        }
      } else {
        addValue(hs, name, String(value));
      }
    }
  }
  return {
    version: '1.0',
    context: {
      distributionDomainName: 'd111111abcdef8.cloudfront.net',
      distributionId: 'EDFDVBD6EXAMPLE',
      eventType: 'viewer-request',
      requestId: 'EXAMPLEntjQpEXAMPLE_SG5Z-EXAMPLEPmPfEXAMPLEu3EqEXAMPLE==',
    },
    viewer: { ip },
    request: { method, uri, querystring, headers: hs, cookies },
  };
}

function addValue(obj, name, value) {
  const existing = obj[name];
  if (!existing) {
    obj[name] = { value };
  } else {
    if (!existing.multiValue) existing.multiValue = [{ value: existing.value }];
    existing.multiValue.push({ value });
  }
}

function checkFields(what, fields) {
  if (fields === undefined) return;
  if (typeof fields !== 'object' || fields === null) throw new Refused(`${what} must be an object`);
  for (const [name, v] of Object.entries(fields)) {
    if (what === 'headers' && name !== name.toLowerCase()) {
      throw new Refused(`header names must be lower case: ${name}`);
    }
    if (typeof v !== 'object' || v === null || typeof v.value !== 'string') {
      throw new Refused(`${what}.${name} must be {value: string}`);
    }
  }
}

// Checks what the handler returned; returns 'request' or 'response'.
export function checkResult(result, event) {
  if (result === null || typeof result !== 'object') throw new Refused('handler returned no object');
  if (typeof result.then === 'function') throw new Refused('handler returned a promise');
  if ('statusCode' in result) {
    const s = result.statusCode;
    if (!Number.isInteger(s) || s < 100 || s > 599) throw new Refused(`bad statusCode ${s}`);
    if (result.statusDescription !== undefined && typeof result.statusDescription !== 'string') {
      throw new Refused('statusDescription must be a string');
    }
    checkFields('headers', result.headers);
    checkFields('cookies', result.cookies);
    const b = result.body;
    if (b !== undefined && typeof b !== 'string') {
      if (typeof b !== 'object' || b === null || typeof b.data !== 'string'
        || !['text', 'base64'].includes(b.encoding)) {
        throw new Refused('body must be a string or {data: string, encoding: text|base64}');
      }
    }
    return 'response';
  }
  if (typeof result.uri !== 'string' || !result.uri.startsWith('/')) {
    throw new Refused('a returned request needs a uri starting with /');
  }
  if (result.method !== event.request.method) throw new Refused('the method is read-only');
  if (typeof result.querystring !== 'string') checkFields('querystring', result.querystring);
  checkFields('headers', result.headers);
  checkFields('cookies', result.cookies);
  return 'request';
}

// Runs `code` on `event` (a built event: see buildEvent). Returns {result, origin, kind}:
// origin is the id passed to cf.selectRequestOriginById (null if none), kind 'request' or
// 'response'. Throws Refused, or FunctionError when the code throws (or runs over 1 s).
export function runViewerRequest(code, event, { originIds } = {}) {
  const body = checkCode(code);
  const state = { origin: null, originCalls: 0 };
  const ctx = vm.createContext({ cf: makeCf(state, originIds), console }, {
    codeGeneration: { strings: false, wasm: false },
  });
  for (const name of FORBIDDEN_GLOBALS) refusingGlobal(ctx, name);
  // Strict mode, as CloudFront runs every function (on the blanked import line: the line
  // numbers of errors stay those of the file).
  inSandbox('loading the code', () => new vm.Script(`'use strict';${body}\n;globalThis.__handler = typeof handler === 'function' ? handler : null;`, {
    filename: 'viewer-request.js',
  }).runInContext(ctx, { timeout: 1000 }));
  if (!ctx.__handler) throw new Refused('the code defines no function handler(event)');
  // The event crosses into the sandbox as JSON: the code gets a fresh object of its own realm.
  ctx.__event = JSON.stringify(event);
  const result = inSandbox('the handler threw', () => vm.runInContext('__handler(JSON.parse(__event))', ctx, { timeout: 1000 }));
  const plain = result && typeof result === 'object' && typeof result.then !== 'function'
    ? JSON.parse(JSON.stringify(result)) : result;
  const kind = checkResult(plain, event);
  if (state.originCalls > 1) throw new Refused('selectRequestOriginById called more than once');
  if (kind === 'response' && state.origin !== null) {
    throw new Refused('an origin was selected for a generated response');
  }
  return { result: plain, origin: state.origin, kind };
}

// The CLI's answer for one request spec.
export function summarize(code, request, options) {
  const { result, origin, kind } = runViewerRequest(code, buildEvent(request), options);
  return kind === 'request'
    ? { uri: result.uri, origin, status: null }
    : { uri: null, origin: null, status: result.statusCode };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [codeFile, requestJson] = process.argv.slice(2);
  if (!codeFile || !requestJson) {
    console.error('usage: node tests/edge/harness.mjs <code-file> <request-json>');
    process.exit(64);
  }
  try {
    const out = summarize(readFileSync(codeFile, 'utf8'), JSON.parse(requestJson));
    console.log(JSON.stringify(out));
  } catch (e) {
    console.error(`refused: ${e.message}`);
    process.exit(2);
  }
}
