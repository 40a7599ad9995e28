// The data layer: JSON files, HTTP byte ranges, and the shared per-prompt .safetensors file,
// all through one least-recently-used cache bounded in bytes (?cache_mb=N, default 64).
// For one prompt the page reads its tokens, every trait's projections (small JSON), and from
// the shared file only byte ranges: the header, the residual norms, the logit lens, and the
// selected token's attention rows (docs/formats.md).

const DEFAULT_CACHE_MB = 64;
const HEADER_GUESS = 65536; // first bytes read from a shared file: its header almost always fits

// ---------- a bounded cache: least recently used goes first ----------

export class LRU {
  constructor(budget) {
    this.budget = budget;
    this.map = new Map(); // key -> {promise, bytes}; Map order is use order (oldest first)
    this.bytes = 0;
  }

  // make() -> Promise<{value, bytes}>; the value is shared by every caller of the same key.
  get(key, make) {
    const hit = this.map.get(key);
    if (hit) {
      this.map.delete(key);
      this.map.set(key, hit);
      return hit.promise;
    }
    const entry = { bytes: 0, done: false };
    entry.promise = make().then(({ value, bytes }) => {
      entry.bytes = bytes;
      entry.done = true;
      if (this.map.get(key) === entry) {
        this.bytes += bytes;
        this.evict(key);
      }
      return value;
    }, (err) => {
      if (this.map.get(key) === entry) this.map.delete(key);
      throw err;
    });
    this.map.set(key, entry);
    return entry.promise;
  }

  put(key, value, bytes) {
    this.get(key, () => Promise.resolve({ value, bytes }));
  }

  has(key) {
    return this.map.has(key);
  }

  evict(keep) {
    for (const [key, entry] of this.map) {
      if (this.bytes <= this.budget) break;
      if (key === keep || !entry.done) continue; // in flight: not counted yet
      this.map.delete(key);
      this.bytes -= entry.bytes;
    }
  }
}

let cache = new LRU(DEFAULT_CACHE_MB * 2 ** 20);
let experiment = null;

// Which experiment's files to read, and the cache budget (MB; default when not positive).
export function configure(exp, cacheMb) {
  experiment = exp;
  if (cacheMb > 0) cache = new LRU(cacheMb * 2 ** 20);
}

export function cacheStats() {
  return { bytes: cache.bytes, entries: cache.map.size };
}

// ---------- JSON and byte ranges ----------

function experimentUrl(relpath) {
  return `../experiments/${encodeURIComponent(experiment)}/` + relpath.split("/").map(encodeURIComponent).join("/");
}

async function fetchOk(url, init) {
  const r = await fetch(url, init);
  if (!r.ok) throw new Error(`${decodeURIComponent(url)}: HTTP ${r.status}`);
  return r;
}

// A JSON file through the cache; transform(parsed) is what is kept, weight its bytes.
export function loadJSON(relpath, transform = (x) => x, weight = (value, n) => n) {
  const url = experimentUrl(relpath);
  return cache.get("json " + url, async () => {
    const buf = await (await fetchOk(url)).arrayBuffer();
    const value = transform(JSON.parse(new TextDecoder().decode(buf)));
    return { value, bytes: weight(value, buf.byteLength) };
  });
}

// loadJSON that never throws: null without a path, {error} when loading failed.
export function load(relpath, transform, weight) {
  if (!relpath) return Promise.resolve(null);
  return loadJSON(relpath, transform, weight).catch((error) => ({ error }));
}

const noRanges = new Set(); // URLs whose server ignored Range and sent the whole file

function wholeFile(url) {
  return cache.get("whole " + url, async () => {
    const buf = await (await fetchOk(url)).arrayBuffer();
    return { value: buf, bytes: buf.byteLength };
  });
}

// Bytes [start, end) of a file (fewer where the file ends first), by an HTTP Range request.
// A server that ignores Range sends the whole file: it is kept (in the cache) and read from.
async function readRange(url, start, end) {
  if (end <= start) return new ArrayBuffer(0);
  if (noRanges.has(url)) return (await wholeFile(url)).slice(start, end);
  const r = await fetchOk(url, { headers: { Range: `bytes=${start}-${end - 1}` } });
  const buf = await r.arrayBuffer();
  if (r.status === 206) {
    const m = /bytes (\d+)-(\d+)/.exec(r.headers.get("Content-Range") || "");
    const first = m ? Number(m[1]) : start;
    if (first === start && buf.byteLength <= end - start) return buf;
    if (first > start) throw new Error(`${decodeURIComponent(url)}: asked for bytes from ${start}, got from ${first}`);
    return buf.slice(start - first, end - first);
  }
  noRanges.add(url);
  cache.put("whole " + url, buf, buf.byteLength);
  return buf.slice(start, end);
}

// ---------- the shared per-prompt safetensors file ----------

const DTYPES = { F64: Float64Array, F32: Float32Array, I32: Int32Array, U32: Uint32Array, I16: Int16Array,
  U16: Uint16Array, I8: Int8Array, U8: Uint8Array };

function parseMeta(value) {
  try {
    return JSON.parse(value);
  } catch {
    return value;
  }
}

// A shared per-prompt file: its safetensors header (8-byte little-endian length, then JSON).
function openShared(relpath) {
  const url = experimentUrl(relpath);
  return cache.get("header " + url, async () => {
    const buf = await readRange(url, 0, HEADER_GUESS);
    if (buf.byteLength < 8) throw new Error(`${relpath}: not a safetensors file`);
    const view = new DataView(buf);
    const n = view.getUint32(0, true) + view.getUint32(4, true) * 2 ** 32;
    let bytes = new Uint8Array(buf, 8, Math.min(n, buf.byteLength - 8));
    if (8 + n > buf.byteLength) bytes = new Uint8Array(await readRange(url, 8, 8 + n));
    const header = JSON.parse(new TextDecoder().decode(bytes));
    const meta = Object.fromEntries(Object.entries(header.__metadata__ || {}).map(([k, v]) => [k, parseMeta(v)]));
    delete header.__metadata__;
    // The first bytes read stay with the header: a small file's tensors need no more requests.
    const shared = { url, relpath, dataStart: 8 + n, tensors: header, meta, head: buf,
      nPrompt: Number(meta.n_prompt), nLayers: Number(meta.n_layers), lensTokens: meta.logit_lens_tokens || null };
    return { value: shared, bytes: n + buf.byteLength };
  });
}

function readShared(shared, start, end) {
  if (end <= shared.head.byteLength) return Promise.resolve(shared.head.slice(start, end));
  return readRange(shared.url, start, end);
}

function tensor(shared, name) {
  const info = shared && shared.tensors[name];
  if (!info) return Promise.resolve(null);
  return cache.get(`tensor ${shared.url} ${name}`, async () => {
    const Type = DTYPES[info.dtype];
    if (!Type) throw new Error(`${shared.relpath}: ${name} has dtype ${info.dtype}, which the viewer does not read`);
    const [a, b] = info.data_offsets;
    const buf = await readShared(shared, shared.dataStart + a, shared.dataStart + b);
    return { value: { data: new Type(buf), shape: info.shape }, bytes: buf.byteLength };
  });
}

// Token t's attention rows at every layer, [L][t + 1] weights: one byte range of the packed
// lower triangle (token t's block of L * (t + 1) entries starts at entry L * t * (t + 1) / 2).
export function attentionRows(shared, t) {
  const info = shared && shared.tensors.attention;
  if (!info) return Promise.resolve(null);
  return cache.get(`attention ${shared.url} ${t}`, async () => {
    const Type = DTYPES[info.dtype];
    const L = shared.nLayers;
    const start = shared.dataStart + info.data_offsets[0] + ((L * t * (t + 1)) / 2) * Type.BYTES_PER_ELEMENT;
    const buf = await readShared(shared, start, start + L * (t + 1) * Type.BYTES_PER_ELEMENT);
    const codes = new Type(buf);
    const scale = info.dtype === "U16" ? 65535 : 1; // uint16 fixed point: weight = value / 65535
    const rows = [];
    for (let l = 0; l < L; l++) rows.push(Array.from(codes.subarray(l * (t + 1), (l + 1) * (t + 1)), (c) => c / scale));
    return { value: rows, bytes: buf.byteLength * 4 };
  });
}

// ---------- one prompt's files ----------

// The tokens of one prompt (prompt then response), from its response file.
function tokensOf(resp) {
  return { tokens: resp.prompt.tokens.concat(resp.response.tokens), nPrompt: resp.prompt.n_tokens };
}

// A trait's projections for one prompt: proj[(t * L + l) * P + p], float64 (exactly the JSON's numbers).
export function captureOf(rec) {
  const rows = rec.projections.prompt.concat(rec.projections.response);
  const L = rec.metadata.n_layers;
  const P = rows.length ? rows[0][0].length : 3;
  const proj = new Float64Array(rows.length * L * P);
  rows.forEach((tok, t) => tok.forEach((layer, l) => layer.forEach((v, p) => { proj[(t * L + l) * P + p] = v; })));
  return { trait: rec.trait, T: rows.length, L, P, nPrompt: rec.projections.prompt.length, proj };
}

// The logit lens of a shared file: top-k ids and probabilities per token and lens row. A lens
// may cover a subset of the layers (metadata logit_lens_layers); row(l) is -1 for the others.
function lensOf(shared, ids, probs) {
  const covered = shared.meta.logit_lens_layers;
  const layers = Array.isArray(covered) ? covered.map(Number) : [...Array(ids.shape[1]).keys()];
  const rows = new Map(layers.map((l, r) => [l, r]));
  return { ids: ids.data, probs: probs.data, L: ids.shape[1], k: ids.shape[2], tokens: shared.lensTokens, layers,
    row: (l) => rows.get(l) ?? -1 };
}

// What one prompt's views share: tokens, the shared file's norms and logit lens.
export async function promptBase(entry) {
  const [toks, shared] = await Promise.all([
    load(entry.response, tokensOf, (v, n) => n),
    entry.shared ? openShared(entry.shared).catch((error) => ({ error })) : Promise.resolve(null),
  ]);
  const base = { toks, shared, norms: null, lens: null };
  if (shared && !shared.error) {
    try {
      const [norms, ids, probs] = await Promise.all(["residual_norms", "logit_lens_ids", "logit_lens_probs"]
        .map((name) => tensor(shared, name)));
      base.norms = norms;
      if (ids && probs && shared.lensTokens) base.lens = lensOf(shared, ids, probs);
    } catch (error) {
      base.shared = { error };
    }
  }
  return base;
}
