/* gen.c - the deterministic answer text and the generated OpenAI / Anthropic SSE streams.
 *
 * The answer text is "Hello from NAME! " followed by a fixed filler, so the same flags always
 * produce the same bytes, and the text of a stream's deltas concatenated equals the content of
 * the non-streaming answer. Events are built with printf into an lp_buf (no JSON library on the
 * per-chunk path), one event at a time, so a long stream never sits in memory whole.
 */
#include <stdio.h>
#include <string.h>

#include "mock.h"

static const char FILLER[] =
    "This is a deterministic answer from the llm-mock upstream. The quick brown fox jumps over "
    "the lazy dog while streaming tokens one chunk at a time. ";

long mock_tokens(size_t bytes)
{
    long t = (long)(bytes / 4);
    return t > 0 ? t : 1;
}

void mock_text_append(struct lp_buf *b, const char *name, size_t from, size_t n)
{
    char prefix[160];
    int plen = snprintf(prefix, sizeof prefix, "Hello from %s! ", name);
    size_t pl = plen < 0 ? 0 : (size_t)plen < sizeof prefix ? (size_t)plen : sizeof prefix - 1;
    size_t fl = sizeof FILLER - 1;
    while (n > 0) {
        const char *src;
        size_t avail;
        if (from < pl) {
            src = prefix + from;
            avail = pl - from;
        } else {
            size_t off = (from - pl) % fl;
            src = FILLER + off;
            avail = fl - off;
        }
        size_t take = avail < n ? avail : n;
        lp_buf_append_json_escaped(b, src, take);
        from += take;
        n -= take;
    }
}

/* Total answer length for the plan: chunk_bytes per chunk, else response_bytes shared out. */
static size_t text_len(const struct mock_plan *p)
{
    size_t n = (size_t)(p->spec.chunks > 0 ? p->spec.chunks : 0);
    if (p->spec.chunk_bytes > 0)
        return n * (size_t)p->spec.chunk_bytes;
    size_t len = (size_t)(p->response_bytes > 0 ? p->response_bytes : 1);
    return len > n ? len : n;
}

static void append_slice(const struct mock_plan *p, const char *name, long k, struct lp_buf *b)
{
    size_t n = (size_t)p->spec.chunks, len = text_len(p);
    size_t from = len * (size_t)k / n, to = len * (size_t)(k + 1) / n;
    mock_text_append(b, name, from, to - from);
}

static void model_json(const struct mock_plan *p, struct lp_buf *b)
{
    const char *m = p->model ? p->model : "mock-model";
    lp_buf_appendc(b, '"');
    lp_buf_append_json_escaped(b, m, strlen(m));
    lp_buf_appendc(b, '"');
}

/* "data: {...chat.completion.chunk head..." up to and including `"choices":` */
static void openai_head(const struct mock_plan *p, struct lp_buf *b)
{
    lp_buf_printf(b,
                  "data: {\"id\":\"chatcmpl-mock-%llu\",\"object\":\"chat.completion.chunk\","
                  "\"created\":%lld,\"model\":",
                  (unsigned long long)p->resp_id, (long long)p->created);
    model_json(p, b);
    lp_buf_appends(b, ",\"choices\":");
}

static void openai_event(const struct mock_plan *p, const char *name, long i, struct lp_buf *b)
{
    long n = p->spec.chunks;
    if (i == n + 2 + (p->include_usage ? 1 : 0)) {
        lp_buf_appends(b, "data: [DONE]\n\n");
        return;
    }
    openai_head(p, b);
    if (i == 0) {
        lp_buf_appends(b, "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
                          "\"finish_reason\":null}]");
    } else if (i <= n) {
        lp_buf_appends(b, "[{\"index\":0,\"delta\":{\"content\":\"");
        append_slice(p, name, i - 1, b);
        lp_buf_appends(b, "\"},\"finish_reason\":null}]");
    } else if (i == n + 1) {
        lp_buf_appends(b, "[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]");
    } else {
        long c = mock_tokens(text_len(p));
        lp_buf_printf(b,
                      "[],\"usage\":{\"prompt_tokens\":%ld,\"completion_tokens\":%ld,"
                      "\"total_tokens\":%ld}",
                      p->prompt_tokens, c, p->prompt_tokens + c);
    }
    lp_buf_appends(b, "}\n\n");
}

static void anthropic_message_start(const struct mock_plan *p, struct lp_buf *b)
{
    lp_buf_printf(b,
                  "event: message_start\ndata: {\"type\":\"message_start\",\"message\":"
                  "{\"id\":\"msg_mock_%llu\",\"type\":\"message\",\"role\":\"assistant\","
                  "\"model\":",
                  (unsigned long long)p->resp_id);
    model_json(p, b);
    lp_buf_printf(b,
                  ",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":"
                  "{\"input_tokens\":%ld,\"output_tokens\":1}}}\n\n",
                  p->prompt_tokens);
}

static void anthropic_event(const struct mock_plan *p, const char *name, long i, struct lp_buf *b)
{
    long n = p->spec.chunks;
    if (i == 0) {
        anthropic_message_start(p, b);
    } else if (i == 1) {
        lp_buf_appends(b, "event: content_block_start\ndata: {\"type\":\"content_block_start\","
                          "\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
    } else if (i == 2) {
        lp_buf_appends(b, "event: ping\ndata: {\"type\":\"ping\"}\n\n");
    } else if (i < 3 + n) {
        lp_buf_appends(b, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\","
                          "\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"");
        append_slice(p, name, i - 3, b);
        lp_buf_appends(b, "\"}}\n\n");
    } else if (i == 3 + n) {
        lp_buf_appends(b, "event: content_block_stop\ndata: {\"type\":\"content_block_stop\","
                          "\"index\":0}\n\n");
    } else if (i == 4 + n) {
        lp_buf_printf(b,
                      "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":"
                      "{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":"
                      "{\"output_tokens\":%ld}}\n\n",
                      mock_tokens(text_len(p)));
    } else {
        lp_buf_appends(b, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    }
}

static void answer_json(const struct mock_plan *p, const char *name, struct lp_buf *b);

/* Gemini alt=sse: one GenerateContentResponse per chunk, CRLF-framed as Google does; the last
 * carries finishReason STOP and the final usageMetadata. */
static void gemini_usage(const struct mock_plan *p, long out, struct lp_buf *b)
{
    lp_buf_printf(b,
                  "\"usageMetadata\":{\"promptTokenCount\":%ld,\"candidatesTokenCount\":%ld,"
                  "\"totalTokenCount\":%ld}",
                  p->prompt_tokens, out, p->prompt_tokens + out);
}

static void gemini_event(const struct mock_plan *p, const char *name, long i, struct lp_buf *b)
{
    long n = p->spec.chunks;
    lp_buf_appends(b, "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"");
    append_slice(p, name, i, b);
    lp_buf_appends(b, "\"}],\"role\":\"model\"}");
    if (i == n - 1)
        lp_buf_appends(b, ",\"finishReason\":\"STOP\"");
    lp_buf_appends(b, ",\"index\":0}],");
    gemini_usage(p, i == n - 1 ? mock_tokens(text_len(p)) : 0, b);
    lp_buf_appends(b, ",\"modelVersion\":");
    model_json(p, b);
    lp_buf_printf(b, ",\"responseId\":\"mock-%llu\"}\r\n\r\n", (unsigned long long)p->resp_id);
}

void mock_body_gemini(const struct mock_plan *p, const char *name, struct lp_buf *b)
{
    lp_buf_appends(b, "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":");
    answer_json(p, name, b);
    lp_buf_appends(b, "}],\"role\":\"model\"},\"finishReason\":\"STOP\",\"index\":0}],");
    gemini_usage(p, mock_tokens(text_len(p)), b);
    lp_buf_appends(b, ",\"modelVersion\":");
    model_json(p, b);
    lp_buf_printf(b, ",\"responseId\":\"mock-%llu\"}", (unsigned long long)p->resp_id);
}

long mock_gen_count(const struct mock_plan *p)
{
    long n = p->spec.chunks;
    if (p->spec.proto == MOCK_PROTO_GEMINI)
        return n;
    if (p->spec.proto == MOCK_PROTO_ANTHROPIC)
        return n + 6;
    return n + 3 + (p->include_usage ? 1 : 0);
}

int mock_gen_delay(const struct mock_plan *p, long i)
{
    /* The first content delta follows the stream's opening events directly. */
    long first_delta = p->spec.proto == MOCK_PROTO_ANTHROPIC ? 3
                       : p->spec.proto == MOCK_PROTO_GEMINI  ? 0
                                                             : 1;
    if (i == 0)
        return p->first_delay_ms;
    if (i > first_delta && i < first_delta + p->spec.chunks)
        return p->spec.interval_ms;
    return 0;
}

void mock_gen_event(const struct mock_plan *p, const char *name, long i, struct lp_buf *out)
{
    if (p->spec.proto == MOCK_PROTO_ANTHROPIC)
        anthropic_event(p, name, i, out);
    else if (p->spec.proto == MOCK_PROTO_GEMINI)
        gemini_event(p, name, i, out);
    else
        openai_event(p, name, i, out);
}

/* ---- non-streaming bodies ---- */

static void answer_json(const struct mock_plan *p, const char *name, struct lp_buf *b)
{
    lp_buf_appendc(b, '"');
    mock_text_append(b, name, 0, text_len(p));
    lp_buf_appendc(b, '"');
}

void mock_body_openai_chat(const struct mock_plan *p, const char *name, struct lp_buf *b)
{
    long c = mock_tokens(text_len(p));
    lp_buf_printf(b,
                  "{\"id\":\"chatcmpl-mock-%llu\",\"object\":\"chat.completion\",\"created\":"
                  "%lld,\"model\":",
                  (unsigned long long)p->resp_id, (long long)p->created);
    model_json(p, b);
    lp_buf_appends(b, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                      "\"content\":");
    answer_json(p, name, b);
    lp_buf_printf(b,
                  "},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{"
                  "\"prompt_tokens\":%ld,\"completion_tokens\":%ld,\"total_tokens\":%ld},"
                  "\"system_fingerprint\":\"fp_mock\"}",
                  p->prompt_tokens, c, p->prompt_tokens + c);
}

void mock_body_openai_completion(const struct mock_plan *p, const char *name, struct lp_buf *b)
{
    long c = mock_tokens(text_len(p));
    lp_buf_printf(b,
                  "{\"id\":\"cmpl-mock-%llu\",\"object\":\"text_completion\",\"created\":"
                  "%lld,\"model\":",
                  (unsigned long long)p->resp_id, (long long)p->created);
    model_json(p, b);
    lp_buf_appends(b, ",\"choices\":[{\"index\":0,\"text\":");
    answer_json(p, name, b);
    lp_buf_printf(b,
                  ",\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{"
                  "\"prompt_tokens\":%ld,\"completion_tokens\":%ld,\"total_tokens\":%ld}}",
                  p->prompt_tokens, c, p->prompt_tokens + c);
}

void mock_body_openai_responses(const struct mock_plan *p, const char *name, struct lp_buf *b)
{
    long c = mock_tokens(text_len(p));
    lp_buf_printf(b,
                  "{\"id\":\"resp_mock_%llu\",\"object\":\"response\",\"created_at\":%lld,"
                  "\"status\":\"completed\",\"model\":",
                  (unsigned long long)p->resp_id, (long long)p->created);
    model_json(p, b);
    lp_buf_printf(b,
                  ",\"output\":[{\"type\":\"message\",\"id\":\"msg_mock_%llu\",\"status\":"
                  "\"completed\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\","
                  "\"annotations\":[],\"text\":",
                  (unsigned long long)p->resp_id);
    answer_json(p, name, b);
    lp_buf_printf(b,
                  "}]}],\"usage\":{\"input_tokens\":%ld,\"output_tokens\":%ld,"
                  "\"total_tokens\":%ld}}",
                  p->prompt_tokens, c, p->prompt_tokens + c);
}

void mock_body_embeddings(const struct mock_plan *p, size_t inputs, struct lp_buf *b)
{
    lp_buf_appends(b, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < inputs; i++) {
        lp_buf_printf(b, "%s{\"object\":\"embedding\",\"index\":%zu,\"embedding\":[", i ? "," : "",
                      i);
        for (int d = 0; d < 8; d++)
            lp_buf_printf(b, "%s%.4f", d ? "," : "",
                          (double)((int)((i + 1) * 7 + d * 13) % 100) / 100.0);
        lp_buf_appends(b, "]}");
    }
    lp_buf_appends(b, "],\"model\":");
    model_json(p, b);
    lp_buf_printf(b, ",\"usage\":{\"prompt_tokens\":%ld,\"total_tokens\":%ld}}", p->prompt_tokens,
                  p->prompt_tokens);
}

void mock_body_anthropic(const struct mock_plan *p, const char *name, struct lp_buf *b)
{
    lp_buf_printf(b,
                  "{\"id\":\"msg_mock_%llu\",\"type\":\"message\",\"role\":\"assistant\","
                  "\"model\":",
                  (unsigned long long)p->resp_id);
    model_json(p, b);
    lp_buf_appends(b, ",\"content\":[{\"type\":\"text\",\"text\":");
    answer_json(p, name, b);
    lp_buf_printf(b,
                  "}],\"stop_reason\":\"end_turn\",\"stop_sequence\":null,\"usage\":{"
                  "\"input_tokens\":%ld,\"output_tokens\":%ld}}",
                  p->prompt_tokens, mock_tokens(text_len(p)));
}
