'use strict';
// Streaming load generator: N concurrent SSE requests, per-stream time to first chunk and
// inter-chunk gaps. Node standard library only. Usage: node streams.js '<json config>'
// config: {url, headers, body, concurrency, total?, duration_s?, chunks, timeout_ms?, ramp_ms?}
//   chunks: expected content chunks per stream (a stream with fewer is an error).
// Prints one JSON line with percentiles (milliseconds) and error counts.
const http = require('http');

const cfg = JSON.parse(process.argv[2]);
const url = new URL(cfg.url);
const body = Buffer.from(cfg.body);
const headers = Object.assign({ 'content-type': 'application/json', 'content-length': body.length },
  cfg.headers || {});
const agent = new http.Agent({ keepAlive: true, maxSockets: cfg.concurrency, maxFreeSockets: cfg.concurrency });
const timeoutMs = cfg.timeout_ms || 120000;
const deadline = cfg.duration_s ? Date.now() + cfg.duration_s * 1000 : Infinity;
const total = cfg.total || Infinity;
const MARK = Buffer.from('"tok');
const EMPTY = Buffer.alloc(0);

const ttfc = [];
const gaps = [];
const errors = { status: 0, incomplete: 0, network: 0, timeout: 0 };
const firstErrors = [];
let started = 0;
let completed = 0;

function now() { return Number(process.hrtime.bigint()) / 1e6; }

function noteError(kind, detail) {
  errors[kind] += 1;
  if (firstErrors.length < 5) firstErrors.push(kind + ': ' + String(detail).slice(0, 300));
}

function one() {
  return new Promise((resolve) => {
    const t0 = now();
    let last = 0;
    let count = 0;
    let carry = EMPTY;
    let tail = EMPTY;
    const hit = (t) => {
      count += 1;
      if (count === 1) ttfc.push(t - t0);
      else gaps.push(t - last);
      last = t;
    };
    let done = false;
    const finish = (kind, detail) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (kind) noteError(kind, detail);
      else completed += 1;
      resolve();
    };
    const req = http.request({
      host: url.hostname, port: url.port, path: url.pathname + url.search, method: 'POST',
      headers, agent,
    }, (res) => {
      if (res.statusCode !== 200) {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c) => { text += c; });
        res.on('end', () => finish('status', res.statusCode + ' ' + text));
        res.on('error', (e) => finish('network', e.message));
        return;
      }
      res.on('data', (chunk) => {
        const t = now();
        // Count content chunks on raw bytes; a marker split across two reads is caught by
        // searching the joint of the previous read's last bytes and this read's first bytes.
        if (carry.length) {
          const joint = Buffer.concat([carry, chunk.subarray(0, MARK.length - 1)]);
          if (joint.indexOf(MARK) !== -1) hit(t);
        }
        let idx = chunk.indexOf(MARK);
        while (idx !== -1) {
          hit(t);
          idx = chunk.indexOf(MARK, idx + MARK.length);
        }
        carry = chunk.subarray(Math.max(0, chunk.length - (MARK.length - 1)));
        tail = chunk.length >= 64 ? chunk.subarray(chunk.length - 64) : Buffer.concat([tail, chunk]).subarray(-64);
      });
      res.on('end', () => {
        const t = tail.toString('latin1');
        const ended = t.includes('[DONE]') || t.includes('message_stop');
        if (count < cfg.chunks || !ended) finish('incomplete', 'chunks=' + count + ' tail=' + t);
        else finish(null);
      });
      res.on('error', (e) => finish('network', e.message));
      res.on('aborted', () => finish('network', 'aborted'));
    });
    const timer = setTimeout(() => { req.destroy(); finish('timeout', 'after ' + timeoutMs + ' ms'); }, timeoutMs);
    req.on('error', (e) => finish('network', e.message));
    req.end(body);
  });
}

async function worker(i) {
  // Ramp: spread the first requests over ramp_ms so 1000 connects are not one thundering herd.
  const delay = ((cfg.ramp_ms || 0) * i) / cfg.concurrency;
  if (delay > 0) await new Promise((r) => setTimeout(r, delay));
  while (started < total && Date.now() < deadline) {
    started += 1;
    await one();
  }
}

function pct(sorted, p) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return Math.round(sorted[i] * 1000) / 1000;
}

async function main() {
  const t0 = now();
  const workers = [];
  for (let i = 0; i < cfg.concurrency; i++) workers.push(worker(i));
  await Promise.all(workers);
  const wall = (now() - t0) / 1000;
  ttfc.sort((a, b) => a - b);
  gaps.sort((a, b) => a - b);
  const errs = errors.status + errors.incomplete + errors.network + errors.timeout;
  process.stdout.write('STREAMJSON ' + JSON.stringify({
    started, completed, errors: errs, error_kinds: errors, first_errors: firstErrors,
    wall_s: Math.round(wall * 1000) / 1000,
    ttfc_ms: { p50: pct(ttfc, 50), p90: pct(ttfc, 90), p99: pct(ttfc, 99), max: pct(ttfc, 100), n: ttfc.length },
    gap_ms: { p50: pct(gaps, 50), p90: pct(gaps, 90), p99: pct(gaps, 99), max: pct(gaps, 100), n: gaps.length },
  }) + '\n');
  agent.destroy();
}

main();
