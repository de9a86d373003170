// client.mjs - run one request through an official SDK and print the outcome as one JSON line.
//
// Usage: node client.mjs '<scenario JSON>'
// Scenario fields:
//   sdk:      "openai" | "anthropic" | "ai-openai" | "ai-anthropic"
//   baseURL:  proxy URL (for "openai"/"ai-openai" include /v1; for "anthropic"/"ai-anthropic" the root)
//   apiKey:   the proxy key
//   model:    the alias
//   stream:   true | false
//   messages: chat messages in the SDK's own format (default: one user "Hello")
//   tools:    tools in the SDK's own format (optional)
//   max_tokens, include_usage (openai stream_options)
// Output: {"ok":bool, "text":..., "tool_calls":[...], "finish":..., "usage":..., "events":n,
//          "error":{"name","message","status"}}
// The SDKs validate what they receive; an SDK that raises is reported as ok:false, so tests can
// assert both that normal streams complete and that broken streams raise.
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';

const sc = JSON.parse(process.argv[2]);
const out = { ok: false, text: '', tool_calls: [], finish: null, usage: null, events: 0 };

const t0 = Date.now();
function done() {
  out.ms = Date.now() - t0;
  process.stdout.write(JSON.stringify(out) + '\n');
}

async function runOpenAI() {
  const client = new OpenAI({ baseURL: sc.baseURL, apiKey: sc.apiKey, maxRetries: sc.maxRetries ?? 0, timeout: 60000 });
  const params = {
    model: sc.model,
    messages: sc.messages || [{ role: 'user', content: 'Hello' }],
  };
  if (sc.tools) params.tools = sc.tools;
  if (sc.max_tokens) params.max_tokens = sc.max_tokens;
  if (sc.stream) {
    params.stream = true;
    if (sc.include_usage) params.stream_options = { include_usage: true };
    const stream = await client.chat.completions.create(params);
    const calls = {};
    for await (const chunk of stream) {
      out.events++;
      if (chunk.usage) out.usage = chunk.usage;
      for (const ch of chunk.choices || []) {
        const d = ch.delta || {};
        if (d.role !== undefined && d.role !== 'assistant') throw new Error('bad role ' + JSON.stringify(d.role));
        if (d.content) out.text += d.content;
        for (const tc of d.tool_calls || []) {
          const c = (calls[tc.index] ||= { id: null, name: '', arguments: '' });
          if (tc.id) c.id = tc.id;
          if (tc.function?.name) c.name += tc.function.name;
          if (tc.function?.arguments) c.arguments += tc.function.arguments;
        }
        if (ch.finish_reason) out.finish = ch.finish_reason;
      }
    }
    out.tool_calls = Object.keys(calls).sort((a, b) => a - b).map((k) => ({ index: Number(k), ...calls[k] }));
  } else {
    const r = await client.chat.completions.create(params);
    const m = r.choices[0].message;
    out.text = m.content || '';
    out.tool_calls = (m.tool_calls || []).map((t, i) => ({ index: i, id: t.id, name: t.function.name, arguments: t.function.arguments }));
    out.finish = r.choices[0].finish_reason;
    out.usage = r.usage;
    out.id = r.id;
    out.model = r.model;
  }
  out.ok = true;
}

async function runAnthropic() {
  const client = new Anthropic({ baseURL: sc.baseURL, apiKey: sc.apiKey, maxRetries: sc.maxRetries ?? 0, timeout: 60000 });
  const params = {
    model: sc.model,
    max_tokens: sc.max_tokens || 256,
    messages: sc.messages || [{ role: 'user', content: 'Hello' }],
  };
  if (sc.tools) params.tools = sc.tools;
  if (sc.system) params.system = sc.system;
  let msg;
  if (sc.stream) {
    const stream = client.messages.stream(params);
    stream.on('streamEvent', () => { out.events++; });
    msg = await stream.finalMessage();
  } else {
    msg = await client.messages.create(params);
  }
  for (const b of msg.content) {
    if (b.type === 'text') out.text += b.text;
    if (b.type === 'tool_use') out.tool_calls.push({ id: b.id, name: b.name, input: b.input });
  }
  out.finish = msg.stop_reason;
  out.usage = msg.usage;
  out.id = msg.id;
  out.model = msg.model;
  out.ok = true;
}

async function runVercel(provider) {
  const { streamText, generateText, jsonSchema, tool } = await import('ai');
  let model;
  if (provider === 'openai') {
    const { createOpenAI } = await import('@ai-sdk/openai');
    model = createOpenAI({ baseURL: sc.baseURL, apiKey: sc.apiKey }).chat(sc.model);
  } else {
    const { createAnthropic } = await import('@ai-sdk/anthropic');
    model = createAnthropic({ baseURL: sc.baseURL + '/v1', apiKey: sc.apiKey })(sc.model);
  }
  const tools = {};
  for (const t of sc.ai_tools || []) {
    tools[t.name] = tool({ description: t.description || t.name, inputSchema: jsonSchema(t.schema) });
  }
  const opts = { model, prompt: sc.prompt || 'Hello', maxRetries: 0 };
  if (Object.keys(tools).length) opts.tools = tools;
  if (sc.stream === false) {
    const r = await generateText(opts);
    out.text = r.text;
    out.finish = r.finishReason;
    out.tool_calls = (r.toolCalls || []).map((c) => ({ name: c.toolName, input: c.input }));
    out.ok = true;
    return;
  }
  const r = streamText({ ...opts, onError: ({ error }) => { throw error; } });
  for await (const part of r.fullStream) {
    out.events++;
    if (part.type === 'error') throw part.error instanceof Error ? part.error : new Error(JSON.stringify(part.error));
    if (part.type === 'text-delta') out.text += part.text ?? part.delta ?? '';
    if (part.type === 'tool-call') out.tool_calls.push({ name: part.toolName, input: part.input });
    if (part.type === 'finish') out.finish = part.finishReason;
  }
  out.usage = await r.usage;
  out.ok = true;
}

try {
  if (sc.sdk === 'openai') await runOpenAI();
  else if (sc.sdk === 'anthropic') await runAnthropic();
  else if (sc.sdk === 'ai-openai') await runVercel('openai');
  else if (sc.sdk === 'ai-anthropic') await runVercel('anthropic');
  else throw new Error('unknown sdk ' + sc.sdk);
} catch (e) {
  out.ok = false;
  out.error = { name: e?.constructor?.name || 'Error', message: String(e?.message || e), status: e?.status ?? null };
  const h = e?.headers;
  const ra = h ? (typeof h.get === 'function' ? h.get('retry-after') : h['retry-after']) : null;
  if (ra != null) out.error.retry_after = ra;
}
done();
