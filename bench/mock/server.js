'use strict';
// Upstream mock for the tokenrelay benchmark: OpenAI Chat Completions and Anthropic Messages,
// non-stream and SSE, OpenAI Responses (non-stream) and Gemini generateContent (non-stream, the
// cpu_cost scenarios). Node standard library only. Usage: node server.js PORT
//
// Stream shape is chosen by a marker anywhere in the request body (it survives every proxy and
// every format translation because it sits in the prompt text):
//   "bench:chunks=64:interval=20"  -> 64 content chunks, 20 ms apart
//   "bench:chunks=64:interval=20:wait=3000" -> the same, answered (headers too) after 3 s: a
//                                   model thinking before its first token
// Without a marker: 4 content chunks, no delay.
const http = require('http');

const port = Number(process.argv[2] || 9100);
const MARKER = /bench:chunks=(\d+):interval=(\d+)(?::wait=(\d+))?/;
const CREATED = Math.floor(Date.now() / 1000);
let seq = 0;

function openaiJson(model) {
  return JSON.stringify({
    id: 'chatcmpl-bench' + (++seq),
    object: 'chat.completion',
    created: CREATED,
    model,
    choices: [{
      index: 0,
      message: { role: 'assistant', content: 'Hello from the bench mock.' },
      logprobs: null,
      finish_reason: 'stop',
    }],
    usage: { prompt_tokens: 12, completion_tokens: 7, total_tokens: 19 },
  });
}

function responsesJson(model) {
  const id = 'resp_bench' + (++seq);
  return JSON.stringify({
    id,
    object: 'response',
    created_at: CREATED,
    status: 'completed',
    model,
    output: [{
      id: 'msg_' + id,
      type: 'message',
      status: 'completed',
      role: 'assistant',
      content: [{ type: 'output_text', annotations: [], logprobs: [], text: 'Hello from the bench mock.' }],
    }],
    parallel_tool_calls: true,
    tool_choice: 'auto',
    tools: [],
    usage: {
      input_tokens: 12,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: 7,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: 19,
    },
  });
}

function geminiJson(model) {
  return JSON.stringify({
    candidates: [{
      content: { parts: [{ text: 'Hello from the bench mock.' }], role: 'model' },
      finishReason: 'STOP',
      index: 0,
    }],
    usageMetadata: { promptTokenCount: 12, candidatesTokenCount: 7, totalTokenCount: 19 },
    modelVersion: model,
    responseId: 'bench' + (++seq),
  });
}

function anthropicJson(model) {
  return JSON.stringify({
    id: 'msg_bench' + (++seq),
    type: 'message',
    role: 'assistant',
    model,
    content: [{ type: 'text', text: 'Hello from the bench mock.' }],
    stop_reason: 'end_turn',
    stop_sequence: null,
    usage: { input_tokens: 12, output_tokens: 7 },
  });
}

function openaiStream(model, includeUsage, n) {
  const id = 'chatcmpl-bench' + (++seq);
  const head = '{"id":"' + id + '","object":"chat.completion.chunk","created":' + CREATED +
    ',"model":' + JSON.stringify(model) + ',"choices":';
  return {
    first: 'data: ' + head + '[{"index":0,"delta":{"role":"assistant","content":""},' +
      '"finish_reason":null}]}\n\n',
    chunk: (i) => 'data: ' + head + '[{"index":0,"delta":{"content":"tok' + i + ' "},' +
      '"finish_reason":null}]}\n\n',
    last: 'data: ' + head + '[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n' +
      (includeUsage ? 'data: ' + head + '[],"usage":{"prompt_tokens":12,"completion_tokens":' +
        n + ',"total_tokens":' + (12 + n) + '}}\n\n' : '') +
      'data: [DONE]\n\n',
  };
}

function anthropicStream(model, n) {
  const id = 'msg_bench' + (++seq);
  return {
    first: 'event: message_start\ndata: {"type":"message_start","message":{"id":"' + id +
      '","type":"message","role":"assistant","model":' + JSON.stringify(model) +
      ',"content":[],"stop_reason":null,"stop_sequence":null,' +
      '"usage":{"input_tokens":12,"output_tokens":1}}}\n\n' +
      'event: content_block_start\ndata: {"type":"content_block_start","index":0,' +
      '"content_block":{"type":"text","text":""}}\n\n',
    chunk: (i) => 'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,' +
      '"delta":{"type":"text_delta","text":"tok' + i + ' "}}\n\n',
    last: 'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n' +
      'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn",' +
      '"stop_sequence":null},"usage":{"output_tokens":' + n + '}}\n\n' +
      'event: message_stop\ndata: {"type":"message_stop"}\n\n',
  };
}

const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
};

function stream(res, shape, n, interval) {
  res.writeHead(200, SSE_HEADERS);
  // The first content chunk goes out with the header events: time to first chunk is the
  // proxy's own latency, not a mock delay.
  res.write(shape.first + shape.chunk(1));
  if (n <= 1) { res.end(shape.last); return; }
  if (interval <= 0) {
    let body = '';
    for (let i = 2; i <= n; i++) body += shape.chunk(i);
    res.end(body + shape.last);
    return;
  }
  let i = 1;
  let closed = false;
  res.on('close', () => { closed = true; clearInterval(timer); });
  const timer = setInterval(() => {
    if (closed) return;
    i += 1;
    if (i >= n) {
      clearInterval(timer);
      res.end(shape.chunk(i) + shape.last);
    } else {
      res.write(shape.chunk(i));
    }
  }, interval);
}

function handle(req, res, raw) {
  let body;
  try {
    body = JSON.parse(raw);
  } catch {
    res.writeHead(400, { 'content-type': 'application/json' });
    res.end('{"error":{"message":"bad json"}}');
    return;
  }
  const model = body.model || 'unknown';
  const m = MARKER.exec(raw);
  const wait = m && m[3] ? Number(m[3]) : 0;
  if (wait > 0 && !req.benchWaited) {
    req.benchWaited = true;
    setTimeout(() => handle(req, res, raw), wait);
    return;
  }
  const n = m ? Number(m[1]) : 4;
  const interval = m ? Number(m[2]) : 0;
  const url = req.url;
  if (url.endsWith('/chat/completions')) {
    if (body.stream) {
      const inc = Boolean(body.stream_options && body.stream_options.include_usage);
      stream(res, openaiStream(model, inc, n), n, interval);
    } else {
      const out = openaiJson(model);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) });
      res.end(out);
    }
  } else if (url.endsWith('/responses') && !body.stream) {
    const out = responsesJson(model);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) });
    res.end(out);
  } else if (url.endsWith(':generateContent')) {
    const out = geminiJson(url.split('/models/')[1].split(':')[0]);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) });
    res.end(out);
  } else if (url.endsWith('/messages')) {
    if (body.stream) {
      stream(res, anthropicStream(model, n), n, interval);
    } else {
      const out = anthropicJson(model);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) });
      res.end(out);
    }
  } else {
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end('{"error":{"message":"not found"}}');
  }
}

const server = http.createServer((req, res) => {
  if (req.method === 'GET') {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok');
    return;
  }
  const parts = [];
  req.on('data', (c) => parts.push(c));
  req.on('end', () => handle(req, res, parts.length === 1 ? parts[0].toString() : Buffer.concat(parts).toString()));
});
server.keepAliveTimeout = 120000;
server.headersTimeout = 125000;
server.maxRequestsPerSocket = 0;
server.listen(port, '127.0.0.1', () => {
  process.stdout.write('mock listening on ' + port + '\n');
});
process.on('SIGTERM', () => process.exit(0));
