/* protocol.h - the wire protocols llm-proxy speaks, as a tiny closed enum.
 *
 * A client protocol is what a client speaks to us (OpenAI chat-completions family or Anthropic
 * messages); a backend's wire protocol is what its body format is. Provider-specific details
 * (URL layout, auth headers, versions) live in the dialect table (dialect.h), not here.
 */
#ifndef LP_PROTOCOL_H
#define LP_PROTOCOL_H

enum lp_proto {
    LP_PROTO_OPENAI = 0,
    LP_PROTO_ANTHROPIC = 1,
    LP_PROTO_GOOGLE = 2, /* Gemini / Vertex AI generateContent: a backend wire protocol only */
};

#define LP_PROTO__COUNT 3

/* A backend's dialect: its wire protocol plus the provider's way of addressing and
 * authenticating requests (dialect.h has the table). Kept here, beside lp_proto, so that
 * config.h can name it without including the table. */
enum lp_dialect_id {
    LP_DIALECT_OPENAI = 0,    /* OpenAI and every OpenAI-compatible provider */
    LP_DIALECT_ANTHROPIC = 1, /* api.anthropic.com and compatible relays */
    LP_DIALECT_AZURE = 2,     /* Azure OpenAI: deployment URLs, api-version, `api-key` header */
    LP_DIALECT_COHERE = 3,    /* Cohere's OpenAI-compatible API (/compatibility/v1) */
    LP_DIALECT_GOOGLE = 4,    /* Gemini API (x-goog-api-key) and Vertex AI (Bearer token) */
};

#define LP_DIALECT__COUNT 5

/* "openai" / "anthropic" / "google"; "?" for a value out of range. */
static inline const char *lp_proto_name(enum lp_proto p)
{
    switch (p) {
    case LP_PROTO_OPENAI:
        return "openai";
    case LP_PROTO_ANTHROPIC:
        return "anthropic";
    case LP_PROTO_GOOGLE:
        return "google";
    }
    return "?";
}

#endif
