/* otlp.h - the OTLP/HTTP trace exporter: a bounded queue and one background thread.
 *
 * Workers hand finished spans (an OTLP/JSON fragment per request, see trace.h) to
 * lp_otlp_submit, which never blocks beyond a mutex held for a pointer push: when the queue holds
 * OTEL_BSP_MAX_QUEUE_SIZE spans (default 2048) the fragment is dropped and counted.
 *
 * The exporter thread batches like the OpenTelemetry batch span processor: it sends when
 * OTEL_BSP_MAX_EXPORT_BATCH_SIZE spans (default 512) are queued or OTEL_BSP_SCHEDULE_DELAY ms
 * (default 5000) have passed since the last export, one POST of
 * {"resourceSpans":[{resource, scopeSpans:[{scope, spans}]}]} (or its protobuf encoding,
 * tracing.otlp_protocol http/protobuf) to {otlp_endpoint}/v1/traces with Content-Type
 * application/json (application/x-protobuf) and tracing.otlp_headers, within
 * OTEL_BSP_EXPORT_TIMEOUT ms
 * (default 30000). Retryable answers (429, 502, 503, 504) and transport errors are retried with
 * exponential backoff (honouring Retry-After, at most 5 tries and the export timeout); then the
 * batch is counted as failed. The endpoint, headers and service name are read from the current
 * config snapshot for every export, so reloads apply.
 *
 * Resource attributes: service.name, service.version, service.instance.id (random per process).
 */
#ifndef LP_OTLP_H
#define LP_OTLP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lp_runtime;

/* Start the exporter thread (idempotent; thread-safe). */
void lp_otlp_start(struct lp_runtime *rt);
/* Queue one request's spans (trace.h's lp_trace_build: JSON span objects, or protobuf
 * ScopeSpans.spans fields), n_spans of them; ownership of data passes to the exporter (freed on
 * drop). Never blocks on I/O. Dropped (and counted) when the exporter is not running or the
 * queue is full. A batch holds one encoding (a reload may switch it). */
void lp_otlp_submit(char *data, size_t len, int n_spans, bool protobuf);
/* Export what is queued (within a short deadline), stop and join the thread. */
void lp_otlp_stop(void);

struct lp_otlp_stats {
    uint64_t exported, dropped, failed; /* spans */
    uint64_t batches, retries;
};
void lp_otlp_stats(struct lp_otlp_stats *out);

/* Register the llm_proxy_trace_spans_total counter's callback. */
void lp_otlp_register_metrics(struct lp_runtime *rt);

#endif
