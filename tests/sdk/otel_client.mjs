// otel_client.mjs - one chat request made inside a CLIENT span of the official OpenTelemetry JS
// SDK, its context injected by the SDK's W3C Trace Context propagator. Prints one JSON line:
// {"ok":bool, "status":n, "traceId":..., "spanId":..., "headers":{traceparent, tracestate}}
//
// Usage: node otel_client.mjs '{"url": "...", "apiKey": "...", "model": "..."}'
import { context, propagation, trace, SpanKind } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { BasicTracerProvider } from '@opentelemetry/sdk-trace-base';

const sc = JSON.parse(process.argv[2]);
const out = { ok: false };
try {
  const provider = new BasicTracerProvider();
  trace.setGlobalTracerProvider(provider);
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  const tracer = trace.getTracer('llm-proxy-tests');
  const span = tracer.startSpan('call llm-proxy', { kind: SpanKind.CLIENT });
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${sc.apiKey}` };
  const ctx = trace.setSpan(context.active(), span);
  propagation.inject(ctx, headers);
  if (sc.tracestate) headers.tracestate = sc.tracestate;
  const r = await fetch(`${sc.url}/v1/chat/completions`, {
    method: 'POST', headers,
    body: JSON.stringify({ model: sc.model, messages: [{ role: 'user', content: 'hi' }] }),
  });
  await r.text();
  span.end();
  const sctx = span.spanContext();
  Object.assign(out, { ok: r.ok, status: r.status, traceId: sctx.traceId, spanId: sctx.spanId,
    headers: { traceparent: headers.traceparent, tracestate: headers.tracestate } });
  await provider.shutdown();
} catch (e) {
  out.error = String(e && e.stack || e);
}
process.stdout.write(JSON.stringify(out) + '\n');
