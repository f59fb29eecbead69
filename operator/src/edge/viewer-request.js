import cf from 'cloudfront';

// imagestack edge function (CloudFront Functions, cloudfront-js-2.0, viewer request).
// One URL per image: GET /i/<source width>/<stem>-<id>[.ext]?w=<css px>&dpr=<1..3>&f=<format>
// is rewritten to the stored rendition /<format>/<stem>-<id>[-w<W>].<ext> on the format's S3
// origin, so the cache key is the rendition itself (no Vary, no query string, no headers).
// Malformed input gets a 400 from here; nothing reaches an origin that the contract does not name.
// Language: cloudfront-js-2.0 (ES 5.1 plus const/let, arrow functions, template literals;
// no for-of, no ES6 Array methods).
// Contract and rationale: processor/contract/src/lib.rs (module edge), README "Edge URLs".

// The stack's widths and formats (one generated line: operator/src/edge.rs renders it).
const CONFIG = {"widths":[320,640,1280,1920],"formats":[{"name":"webp","ext":"webp","origin":"s3-webp"},{"name":"jpeg","ext":"jpg","origin":"s3-jpeg"},{"name":"png","ext":"png","origin":"s3-png"}],"maxWidth":8192,"maxStemBytes":969,"maxUriBytes":3072};

// /i/<sw>/<name> or /i/<name>: sw is the source width in px (decimal, no leading zero).
const PATH = /^\/i\/(?:([1-9][0-9]{0,6})\/)?([^\/]+)$/;
// <stem>-<32 hex id>, optionally followed by a known extension (ignored).
const NAME = /^(.+)-([0-9a-f]{32})(?:\.(?:jpe?g|png|webp|avif))?$/i;
const ALIASES = {jpg: 'jpeg'};

function handler(event) {
  const request = event.request;
  const uri = request.uri;
  if (typeof uri !== 'string' || uri.length > CONFIG.maxUriBytes) return bad('URI too long');
  // Raw backslashes, control characters, dot segments, encoded separators or dots.
  if (/[\\\x00-\x20\x7f]/.test(uri)) return bad('invalid character in path');
  if (/(^|\/)\.\.?(\/|$)/.test(uri)) return bad('dot segment in path');
  if (/%(2f|5c|2e)/i.test(uri)) return bad('encoded separator or dot in path');
  const path = PATH.exec(uri);
  if (!path) return bad('not an image URL: expected /i/<width>/<name>-<id>');
  const name = NAME.exec(path[2]);
  if (!name || name[2] !== name[2].toLowerCase()) {
    return bad('not an image name: expected <name>-<id>');
  }
  const stem = canonicalStem(name[1]);
  if (stem === null) return bad('invalid image name');
  const sourceWidth = path[1] ? Number(path[1]) : 0;

  const q = request.querystring || {};
  const format = pickFormat(param(q, 'f'), header(request, 'accept'));
  if (format === null) return bad('unknown format: f must be one of webp, jpeg, png, avif');
  const target = targetWidth(param(q, 'w'), param(q, 'dpr'), request);
  if (target === null) return bad('invalid w or dpr: w is a positive integer, dpr a number');
  const width = pickWidth(target, sourceWidth);

  request.uri = `/${format.name}/${stem}-${name[2]}${width ? '-w' + width : ''}.${format.ext}`;
  request.querystring = {};
  cf.selectRequestOriginById(format.origin);
  return request;
}

// The stem decoded, checked and percent-encoded again the one way the contract spells it
// (every byte but A-Z a-z 0-9 - . _ ~ as %XX), or null when hostile or too long.
function canonicalStem(raw) {
  let decoded;
  try {
    decoded = decodeURIComponent(raw);
  } catch (e) {
    return null; // malformed escape or not UTF-8
  }
  if (/[\/\\\x00-\x1f\x7f-\x9f]/.test(decoded)) return null;
  const encoded = encodeURIComponent(decoded).replace(/[!'()*]/g,
    (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
  const bytes = encoded.length - 2 * (encoded.split('%').length - 1);
  return bytes > CONFIG.maxStemBytes ? null : encoded;
}

// First value of a query parameter (undefined when absent).
function param(q, key) {
  return q[key] ? q[key].value : undefined;
}

// A header's values joined (duplicates arrive as multiValue).
function header(request, key) {
  const h = request.headers && request.headers[key];
  if (!h) return '';
  return h.multiValue ? h.multiValue.map((v) => v.value).join(',') : h.value;
}

// The enabled format called `name`, else undefined.
function enabled(name) {
  return CONFIG.formats.filter((f) => f.name === name)[0];
}

// ?f= when it names an enabled format; an unknown name is an error (null); a known but
// disabled one is ignored. Else negotiate: AVIF, then WebP, only when Accept names them
// (wildcards do not count), else JPEG, else PNG, else the first enabled format.
function pickFormat(f, accept) {
  if (f !== undefined) {
    const wanted = ALIASES[f.toLowerCase()] || f.toLowerCase();
    if (!/^(webp|jpeg|png|avif)$/.test(wanted)) return null;
    if (enabled(wanted)) return enabled(wanted);
  }
  const accepted = acceptedTypes(accept);
  if (accepted['image/avif'] && enabled('avif')) return enabled('avif');
  if (accepted['image/webp'] && enabled('webp')) return enabled('webp');
  return enabled('jpeg') || enabled('png') || CONFIG.formats[0];
}

// Media types listed in Accept with q > 0.
function acceptedTypes(accept) {
  const out = {};
  accept.split(',').forEach((range) => {
    const parts = range.split(';');
    let q = 1;
    for (let i = 1; i < parts.length; i++) {
      const kv = parts[i].trim().split('=');
      if (kv[0].toLowerCase() === 'q') q = /^[0-9.]+$/.test(kv[1]) ? Number(kv[1]) : 0;
    }
    if (q > 0) out[parts[0].trim().toLowerCase()] = true;
  });
  return out;
}

// The physical width wanted: w x dpr (dpr clamped to 1..3), else the Sec-CH-Width or Width
// client hint (already physical; malformed hints are ignored), else 0 (the full size).
// Clamped to maxWidth; null when w or dpr is malformed.
function targetWidth(w, dpr, request) {
  let ratio = 1;
  if (dpr !== undefined) {
    if (!/^-?([0-9]+\.?[0-9]*|\.[0-9]+)$/.test(dpr)) return null;
    ratio = Math.min(3, Math.max(1, Number(dpr)));
  }
  let target = 0;
  if (w !== undefined) {
    if (!/^[0-9]+$/.test(w) || Number(w) <= 0) return null;
    target = Number(w) * ratio;
  } else {
    const hint = header(request, 'sec-ch-width') || header(request, 'width');
    if (/^[0-9]+(\.[0-9]+)?$/.test(hint.trim())) target = Number(hint.trim());
  }
  return Math.min(Math.ceil(target), CONFIG.maxWidth);
}

// The smallest configured width >= target that the processor wrote (narrower than the
// source), else 0: the full size, which always exists (also when the source width is unknown).
function pickWidth(target, sourceWidth) {
  if (!target || !sourceWidth) return 0;
  const w = CONFIG.widths.filter((x) => x >= target)[0];
  return w !== undefined && w < sourceWidth ? w : 0;
}

function bad(reason) {
  return {
    statusCode: 400,
    statusDescription: 'Bad Request',
    headers: {
      'content-type': {value: 'text/plain; charset=utf-8'},
      'cache-control': {value: 'no-store'},
    },
    body: {encoding: 'text', data: `400 Bad Request: ${reason}\n`},
  };
}
