/* config_walk.c - turns a libyaml document into a struct lp_config, one schema table per block.
 *
 * Every mapping the schema knows is described once, in a `struct field` table (name, kind,
 * struct offset, bounds, handler). walk_map() checks the node type, collects the pairs (resolving
 * `<<` merge keys and reporting duplicate keys), warns about unknown keys and dispatches each
 * known key by kind. Handlers for the irregular parts (lists of backends and routes, the alias
 * map, header maps) are small functions next to their tables.
 *
 * Cross-references are checked while walking: the root table walks `backends` first and
 * `models` second (whatever their order in the file), so a route can resolve its backend and
 * `fallback.alias_fallback` can resolve aliases as soon as they are seen.
 *
 * The walker follows aliases (*anchor) through the document graph, so a hostile file can make it
 * visit nodes exponentially often; node_at() counts visits and stops the walk at a budget.
 */
#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>
#include <strings.h>

#include "clientip.h"
#include "config_internal.h"
#include "dialect.h"
#include "endpoint.h"
#include "logrotate.h"
#include "redis.h"
#include "util/alloc.h"

struct field;
typedef void (*field_fn)(struct lp_config_walk *w, yaml_node_t *val, void *target);

enum kind {
    K_STR,      /* char *, freed and replaced */
    K_BOOL,     /* bool */
    K_INT,      /* int, bounded by [min, max] when min < max */
    K_INT64,    /* int64_t, bounded likewise */
    K_FLOAT,    /* double */
    K_DUR,      /* int64_t milliseconds, > 0 */
    K_SIZE,     /* int64_t bytes, bounded likewise */
    K_FN,       /* fn(w, val, target + off) */
    K_MAP,      /* nested mapping described by sub, on target + off */
    K_IGNORED,  /* accepted, not implemented: listed in the summary warning, not inspected */
    K_ACCEPTED, /* accepted silently (inside a block that is listed as a whole) */
};

struct field {
    const char *key;
    enum kind kind;
    size_t off;
    int64_t min, max;
    field_fn fn;
    const struct field *sub;
    size_t has;  /* offsetof(bool set-flag) + 1, or 0 */
    int pass;    /* walk order within one mapping */
    bool record; /* K_MAP: list the whole block as accepted-but-not-implemented */
};

#define OFF(type, member) offsetof(type, member)
#define HAS(type, member) (offsetof(type, member) + 1)
/* Table entry shorthands: VAL(key, kind, struct type, member), NUM(... , min, max), FN(key, fn)
 * (fn gets the whole target), FNAT(key, type, member, fn) (fn gets the member), MAP/MAPAT for
 * nested blocks, IGN (accepted, listed as not implemented), ACC (accepted silently). */
#define VAL(k, kd, T, m, ...)                                                                      \
    {                                                                                              \
        .key = k, .kind = kd, .off = OFF(T, m), __VA_ARGS__                                        \
    }
#define NUM(k, kd, T, m, lo, hi, ...)                                                              \
    {                                                                                              \
        .key = k, .kind = kd, .off = OFF(T, m), .min = lo, .max = hi, __VA_ARGS__                  \
    }
#define FN(k, f, ...)                                                                              \
    {                                                                                              \
        .key = k, .kind = K_FN, .fn = f, __VA_ARGS__                                               \
    }
#define FNAT(k, T, m, f, ...)                                                                      \
    {                                                                                              \
        .key = k, .kind = K_FN, .off = OFF(T, m), .fn = f, __VA_ARGS__                             \
    }
#define MAP(k, s, ...)                                                                             \
    {                                                                                              \
        .key = k, .kind = K_MAP, .sub = s, __VA_ARGS__                                             \
    }
#define MAPAT(k, T, m, s, ...)                                                                     \
    {                                                                                              \
        .key = k, .kind = K_MAP, .off = OFF(T, m), .sub = s, __VA_ARGS__                           \
    }
#define IGN(k)                                                                                     \
    {                                                                                              \
        .key = k, .kind = K_IGNORED                                                                \
    }
#define ACC(k)                                                                                     \
    {                                                                                              \
        .key = k, .kind = K_ACCEPTED                                                               \
    }
#define END                                                                                        \
    {                                                                                              \
        .key = NULL                                                                                \
    }

struct pair {
    yaml_node_t *key, *val;
    const char *k;
    size_t idx;
    bool own; /* written in this mapping, not merged in through `<<` */
    bool drop;
};

struct pairs {
    struct pair *v;
    size_t n, cap;
};

/* ---- nodes, positions, paths -------------------------------------------------------------- */

static yaml_node_t *node_at(struct lp_config_walk *w, int id)
{
    if (w->stop)
        return NULL;
    if (++w->visits > LP_CONFIG_MAX_VISITS) {
        w->stop = true;
        lp_config_diag_raw(w, LP_DIAG_ERROR, 0, 0,
                           "document too complex (more than %d node visits; alias expansion?)",
                           LP_CONFIG_MAX_VISITS);
        return NULL;
    }
    return yaml_document_get_node(w->doc, id);
}

static int line_of(const yaml_node_t *n)
{
    return (int)n->start_mark.line + 1;
}
static int col_of(const yaml_node_t *n)
{
    return (int)n->start_mark.column + 1;
}

#define ERR(w, n, ...) lp_config_diag((w), LP_DIAG_ERROR, line_of(n), col_of(n), __VA_ARGS__)
#define WARN(w, n, ...) lp_config_diag((w), LP_DIAG_WARNING, line_of(n), col_of(n), __VA_ARGS__)

static const char *kind_name(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a list";
    default:
        return "a scalar";
    }
}

static size_t path_key(struct lp_config_walk *w, const char *key)
{
    size_t mark = w->path.len;
    if (mark > 0)
        lp_buf_appendc(&w->path, '.');
    size_t n = strlen(key);
    lp_buf_append(&w->path, key, n > 64 ? 64 : n); /* unknown keys can be huge */
    return mark;
}

static size_t path_index(struct lp_config_walk *w, size_t i)
{
    size_t mark = w->path.len;
    lp_buf_printf(&w->path, "[%zu]", i);
    return mark;
}

/* ["name"], quoted because alias names contain '/', '.' and other path characters. */
static size_t path_name(struct lp_config_walk *w, const char *name)
{
    size_t mark = w->path.len;
    size_t n = strlen(name);
    lp_buf_appends(&w->path, "[\"");
    lp_buf_append_json_escaped(&w->path, name, n > 64 ? 64 : n);
    lp_buf_appends(&w->path, n > 64 ? "...\"]" : "\"]");
    return mark;
}

static void path_pop(struct lp_config_walk *w, size_t mark)
{
    w->path.len = mark;
    if (w->path.data)
        w->path.data[mark] = '\0';
}

static void record_ignored(struct lp_config_walk *w, const yaml_node_t *key)
{
    if (w->n_ignored == 0) {
        w->ignored_line = line_of(key);
        w->ignored_col = col_of(key);
    }
    if (w->n_ignored++ < 24)
        lp_buf_printf(&w->ignored, "%s%s", w->ignored.len ? ", " : "",
                      w->path.data ? w->path.data : "?");
    else if (w->n_ignored == 25)
        lp_buf_appends(&w->ignored, ", ...");
}

/* ---- scalars ------------------------------------------------------------------------------ */

enum sc { SC_BAD = -1, SC_NULL = 0, SC_OK = 1 };

static bool is_null_node(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)n->data.scalar.value;
    return n->data.scalar.length == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

struct env_ctx {
    struct lp_config_walk *w;
    yaml_node_t *node;
};

static void on_env_missing(void *ctx, const char *name)
{
    struct env_ctx *e = ctx;
    WARN(e->w, e->node, "environment variable %s is not set (using \"\")", name);
}

/* The scalar's text with ${ENV} expanded, into *out (caller frees). SC_NULL for ~/null/empty. */
static enum sc scalar(struct lp_config_walk *w, yaml_node_t *n, const char *want, char **out)
{
    if (is_null_node(n))
        return SC_NULL;
    if (n->type != YAML_SCALAR_NODE) {
        ERR(w, n, "expected %s, got %s", want, kind_name(n));
        return SC_BAD;
    }
    const char *v = (const char *)n->data.scalar.value;
    if (memchr(v, '\0', n->data.scalar.length)) {
        ERR(w, n, "value contains a NUL character");
        return SC_BAD;
    }
    struct env_ctx e = {w, n};
    bool bad;
    char *s = lp_config_expand_env(v, n->data.scalar.length, on_env_missing, &e, &bad);
    if (!s) {
        ERR(w, n, "value longer than %u bytes after ${} expansion", LP_CONFIG_MAX_SCALAR);
        return SC_BAD;
    }
    if (bad)
        WARN(w, n, "malformed ${...} kept literally (write $$ for a literal '$')");
    *out = s;
    return SC_OK;
}

/* Like scalar(), for non-string kinds: an empty expansion (e.g. an unset ${VAR}) is "absent",
 * so the default stays in force. */
static enum sc typed_scalar(struct lp_config_walk *w, yaml_node_t *n, const char *want, char **out)
{
    enum sc r = scalar(w, n, want, out);
    if (r == SC_OK && (*out)[0] == '\0') {
        LP_FREE(out);
        return SC_NULL;
    }
    return r;
}

/* One accepted name of an enumerated key and the value it stands for. */
struct enum_name {
    const char *name;
    int value;
};

/* Read n as one of names[0..count) (exact match) into *out. An empty expansion leaves *out as it
 * is; anything else reports "<what> "x" (expected <want>)" at n. True when *out was set. */
static bool enum_value(struct lp_config_walk *w, yaml_node_t *n, const struct enum_name *names,
                       size_t count, const char *what, const char *want, int *out)
{
    char *s;
    if (typed_scalar(w, n, want, &s) != SC_OK)
        return false;
    for (size_t i = 0; i < count; i++) {
        if (strcmp(s, names[i].name) == 0) {
            *out = names[i].value;
            free(s);
            return true;
        }
    }
    ERR(w, n, "%s \"%.64s\" (expected %s)", what, s, want);
    free(s);
    return false;
}

static bool set_str(struct lp_config_walk *w, yaml_node_t *n, char **slot)
{
    char *s;
    if (scalar(w, n, "a string", &s) != SC_OK)
        return false;
    free(*slot);
    *slot = s;
    return true;
}

static bool get_bool(struct lp_config_walk *w, yaml_node_t *n, bool *out)
{
    char *s;
    if (typed_scalar(w, n, "a boolean", &s) != SC_OK)
        return false;
    bool ok = lp_config_parse_bool(s, out);
    if (!ok)
        ERR(w, n, "expected true or false, got \"%.64s\"", s);
    free(s);
    return ok;
}

static bool get_int(struct lp_config_walk *w, yaml_node_t *n, int64_t min, int64_t max,
                    int64_t *out)
{
    char *s;
    int64_t v = 0;
    if (typed_scalar(w, n, "an integer", &s) != SC_OK)
        return false;
    bool ok = lp_config_parse_int(s, &v);
    if (!ok)
        ERR(w, n, "expected an integer, got \"%.64s\"", s);
    else if (v < min || v > max)
        ERR(w, n, "%lld is out of range [%lld, %lld]", (long long)v, (long long)min,
            (long long)max);
    else
        *out = v;
    free(s);
    return ok && v >= min && v <= max;
}

static bool get_float(struct lp_config_walk *w, yaml_node_t *n, double *out)
{
    char *s;
    if (typed_scalar(w, n, "a number", &s) != SC_OK)
        return false;
    bool ok = lp_config_parse_float(s, out);
    if (!ok)
        ERR(w, n, "expected a number, got \"%.64s\"", s);
    free(s);
    return ok;
}

static bool get_duration(struct lp_config_walk *w, yaml_node_t *n, int64_t *out_ms)
{
    char *s;
    int64_t v = 0;
    if (typed_scalar(w, n, "a duration", &s) != SC_OK)
        return false;
    bool ok = lp_duration_parse(s, &v);
    if (!ok)
        ERR(w, n, "invalid duration \"%.64s\" (examples: 300ms, 10s, 1m30s, 2h)", s);
    else if (v <= 0)
        ERR(w, n, "duration must be greater than zero");
    else
        *out_ms = v;
    free(s);
    return ok && v > 0;
}

static bool get_size(struct lp_config_walk *w, yaml_node_t *n, int64_t min, int64_t max,
                     int64_t *out)
{
    char *s;
    int64_t v = 0;
    if (typed_scalar(w, n, "a size", &s) != SC_OK)
        return false;
    bool ok = lp_size_parse(s, &v);
    if (!ok)
        ERR(w, n, "invalid size \"%.64s\" (examples: 65536, 512KiB, 64MiB, 10MB)", s);
    else if (v < min || v > max)
        ERR(w, n, "size %lld is out of range [%lld, %lld]", (long long)v, (long long)min,
            (long long)max);
    else
        *out = v;
    free(s);
    return ok && v >= min && v <= max;
}

/* ---- mappings ----------------------------------------------------------------------------- */

static void gather(struct lp_config_walk *w, yaml_node_t *map, bool own, int depth,
                   struct pairs *ps);

static bool is_merge_key(const yaml_node_t *k)
{
    return k->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           strcmp((const char *)k->data.scalar.value, "<<") == 0;
}

/* `<<: *defaults` or `<<: [*a, *b]`: merged keys come after the mapping's own, so own keys win
 * and, among merged mappings, the first listed wins (YAML merge-key semantics). */
static void merge(struct lp_config_walk *w, yaml_node_t *val, int depth, struct pairs *ps)
{
    if (depth >= 8) {
        ERR(w, val, "merge keys (<<) nested too deeply");
        return;
    }
    if (val->type == YAML_MAPPING_NODE) {
        gather(w, val, false, depth + 1, ps);
        return;
    }
    if (val->type != YAML_SEQUENCE_NODE) {
        ERR(w, val, "a merge key (<<) needs a mapping or a list of mappings");
        return;
    }
    for (yaml_node_item_t *it = val->data.sequence.items.start; it < val->data.sequence.items.top;
         it++) {
        yaml_node_t *m = node_at(w, *it);
        if (!m)
            return;
        if (m->type != YAML_MAPPING_NODE)
            ERR(w, m, "a merge key (<<) needs a mapping or a list of mappings");
        else
            gather(w, m, false, depth + 1, ps);
    }
}

static void gather(struct lp_config_walk *w, yaml_node_t *map, bool own, int depth,
                   struct pairs *ps)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = node_at(w, p->key), *v = node_at(w, p->value);
        if (!k || !v)
            return;
        if (k->type != YAML_SCALAR_NODE) {
            ERR(w, k, "mapping keys must be scalars, got %s", kind_name(k));
            continue;
        }
        if (memchr(k->data.scalar.value, '\0', k->data.scalar.length)) {
            ERR(w, k, "key contains a NUL character");
            continue;
        }
        if (is_merge_key(k)) {
            merge(w, v, depth, ps);
            continue;
        }
        if (ps->n == ps->cap) {
            ps->cap = ps->cap ? ps->cap * 2 : 16;
            ps->v = lp_xrealloc(ps->v, ps->cap * sizeof *ps->v);
        }
        ps->v[ps->n] = (struct pair){k, v, (const char *)k->data.scalar.value, ps->n, own, false};
        ps->n++;
    }
}

static int cmp_pair_ptr(const void *a, const void *b)
{
    const struct pair *x = *(struct pair *const *)a, *y = *(struct pair *const *)b;
    int c = strcmp(x->k, y->k);
    if (c == 0)
        c = (int)y->own - (int)x->own; /* own keys first: they win over merged ones */
    return c ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

/* Mark every later occurrence of a key as dropped; two occurrences written in the mapping
 * itself are an error (as in yaml.v3: "mapping key already defined"). Sorting keeps this
 * O(n log n) on huge hostile mappings. */
static void drop_duplicates(struct lp_config_walk *w, struct pairs *ps)
{
    if (ps->n < 2)
        return;
    struct pair **sorted = lp_xmalloc(ps->n * sizeof *sorted);
    for (size_t i = 0; i < ps->n; i++)
        sorted[i] = &ps->v[i];
    qsort(sorted, ps->n, sizeof *sorted, cmp_pair_ptr);
    size_t first = 0;
    for (size_t i = 1; i < ps->n; i++) {
        if (strcmp(sorted[i]->k, sorted[first]->k) != 0) {
            first = i;
            continue;
        }
        sorted[i]->drop = true;
        if (sorted[i]->own && sorted[first]->own)
            ERR(w, sorted[i]->key, "duplicate key \"%.64s\" (first defined at line %d)",
                sorted[i]->k, line_of(sorted[first]->key));
    }
    free(sorted);
}

/* The effective pairs of a mapping node, in file order. Caller frees ps->v. */
static void collect_pairs(struct lp_config_walk *w, yaml_node_t *map, struct pairs *ps)
{
    *ps = (struct pairs){0};
    gather(w, map, true, 0, ps);
    drop_duplicates(w, ps);
}

/* Edit distance, for "did you mean" on unknown keys (keys are short). */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 40 || lb > 40)
        return 99;
    size_t d[41][41];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            size_t best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            d[i][j] = best;
        }
    }
    return d[la][lb];
}

static void unknown_key(struct lp_config_walk *w, const struct field *fields, const struct pair *p)
{
    const char *best = NULL;
    size_t best_d = 3;
    for (const struct field *f = fields; f->key; f++) {
        size_t d = distance(p->k, f->key);
        if (d < best_d) {
            best_d = d;
            best = f->key;
        }
    }
    size_t mark = path_key(w, p->k);
    if (best)
        WARN(w, p->key, "unknown key (ignored); did you mean \"%s\"?", best);
    else
        WARN(w, p->key, "unknown key (ignored)");
    path_pop(w, mark);
}

static const struct field *find_field(const struct field *fields, const char *key)
{
    for (const struct field *f = fields; f->key; f++)
        if (strcmp(f->key, key) == 0)
            return f;
    return NULL;
}

static void walk_map(struct lp_config_walk *w, yaml_node_t *node, const struct field *fields,
                     void *target);

static void bounds(const struct field *f, int64_t lo, int64_t hi, int64_t *min, int64_t *max)
{
    *min = f->min < f->max ? f->min : lo;
    *max = f->min < f->max ? f->max : hi;
}

static void walk_field(struct lp_config_walk *w, const struct field *f, const struct pair *p,
                       void *target)
{
    char *slot = (char *)target + f->off;
    int64_t v = 0, min, max;
    bool set = false;
    switch (f->kind) {
    case K_STR:
        set = set_str(w, p->val, (char **)slot);
        break;
    case K_BOOL:
        set = get_bool(w, p->val, (bool *)slot);
        break;
    case K_INT:
        bounds(f, INT_MIN, INT_MAX, &min, &max);
        if ((set = get_int(w, p->val, min, max, &v)))
            *(int *)slot = (int)v;
        break;
    case K_INT64:
        bounds(f, INT64_MIN, INT64_MAX, &min, &max);
        set = get_int(w, p->val, min, max, (int64_t *)slot);
        break;
    case K_FLOAT:
        set = get_float(w, p->val, (double *)slot);
        break;
    case K_DUR:
        set = get_duration(w, p->val, (int64_t *)slot);
        break;
    case K_SIZE:
        bounds(f, 0, INT64_MAX, &min, &max);
        set = get_size(w, p->val, min, max, (int64_t *)slot);
        break;
    case K_FN:
        f->fn(w, p->val, slot);
        break;
    case K_MAP:
        if (f->record)
            record_ignored(w, p->key);
        walk_map(w, p->val, f->sub, slot);
        break;
    case K_IGNORED:
        record_ignored(w, p->key);
        break;
    case K_ACCEPTED:
        break;
    }
    if (set && f->has)
        *(bool *)((char *)target + f->has - 1) = true;
}

static void walk_map(struct lp_config_walk *w, yaml_node_t *node, const struct field *fields,
                     void *target)
{
    if (is_null_node(node))
        return;
    if (node->type != YAML_MAPPING_NODE) {
        ERR(w, node, "expected a mapping, got %s", kind_name(node));
        return;
    }
    struct pairs ps;
    collect_pairs(w, node, &ps);
    int max_pass = 0;
    for (const struct field *f = fields; f->key; f++)
        max_pass = f->pass > max_pass ? f->pass : max_pass;
    for (int pass = 0; pass <= max_pass && !w->stop; pass++) {
        for (size_t i = 0; i < ps.n && !w->stop; i++) {
            if (ps.v[i].drop)
                continue;
            const struct field *f = find_field(fields, ps.v[i].k);
            if (!f) {
                if (pass == 0)
                    unknown_key(w, fields, &ps.v[i]);
                continue;
            }
            if (f->pass != pass)
                continue;
            size_t mark = path_key(w, f->key);
            walk_field(w, f, &ps.v[i], target);
            path_pop(w, mark);
        }
    }
    free(ps.v);
}

/* Iterate a list node: calls fn(w, item, i, arg) with the path set to "[i]". Null is empty. */
typedef void (*item_fn)(struct lp_config_walk *w, yaml_node_t *item, size_t i, void *arg);

static bool walk_list(struct lp_config_walk *w, yaml_node_t *node, const char *want, item_fn fn,
                      void *arg)
{
    if (is_null_node(node))
        return true;
    if (node->type != YAML_SEQUENCE_NODE) {
        ERR(w, node, "expected %s, got %s", want, kind_name(node));
        return false;
    }
    size_t i = 0;
    for (yaml_node_item_t *it = node->data.sequence.items.start;
         it < node->data.sequence.items.top && !w->stop; it++, i++) {
        yaml_node_t *item = node_at(w, *it);
        if (!item)
            break;
        size_t mark = path_index(w, i);
        fn(w, item, i, arg);
        path_pop(w, mark);
    }
    return true;
}

/* ---- small shared handlers ---------------------------------------------------------------- */

struct str_list {
    char ***v;
    size_t *n;
};

static void push_str(char ***v, size_t *n, char *s)
{
    *v = lp_xrealloc(*v, (*n + 1) * sizeof **v);
    (*v)[(*n)++] = s;
}

static void on_str_item(struct lp_config_walk *w, yaml_node_t *item, size_t i, void *arg)
{
    struct str_list *l = arg;
    char *s;
    if (scalar(w, item, "a string", &s) == SC_OK)
        push_str(l->v, l->n, s);
}

static void str_list(struct lp_config_walk *w, yaml_node_t *val, char ***v, size_t *n)
{
    struct str_list l = {v, n};
    walk_list(w, val, "a list of strings", on_str_item, &l);
}

/* passthrough_paths: extra upstream paths an operator allows (endpoint.h). Each must be a safe
 * absolute path without query; naming a built-in endpoint has no effect and is warned about. */
static void on_passthrough_path_item(struct lp_config_walk *w, yaml_node_t *item, size_t i,
                                     void *arg)
{
    struct lp_config *cfg = arg;
    char *s;
    if (scalar(w, item, "a path", &s) != SC_OK)
        return;
    const char *why = NULL;
    if (!lp_endpoint_path_safe(s, &why) || strpbrk(s, "?# \t")) {
        ERR(w, item, "passthrough_paths[%zu]: \"%.100s\" is not a usable path (%s)", i, s,
            why ? why : "no query, fragment or whitespace allowed");
        free(s);
        return;
    }
    if (strncmp(s, "/admin", 6) == 0 || strcmp(s, "/health") == 0 || strcmp(s, "/healthz") == 0 ||
        strcmp(s, "/readyz") == 0 || strcmp(s, "/metrics") == 0 || strcmp(s, "/status") == 0) {
        ERR(w, item, "passthrough_paths[%zu]: \"%.100s\" is one of the proxy's own paths", i, s);
        free(s);
        return;
    }
    if (lp_endpoint_lookup(s, NULL, 0) != LP_EP_NONE)
        WARN(w, item, "passthrough_paths[%zu]: \"%.100s\" is a built-in endpoint already", i, s);
    push_str(&cfg->passthrough_paths, &cfg->n_passthrough_paths, s);
}

static void on_passthrough_paths(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    walk_list(w, val, "a list of paths", on_passthrough_path_item, target);
}

static bool header_name_ok(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
            return false;
    return true;
}

/* A name -> string map into an lp_kv array, in file order. As headers, names must be HTTP
 * tokens and values must not hold CR/LF (they go on the wire verbatim). */
static void kv_map(struct lp_config_walk *w, yaml_node_t *val, struct lp_kv **kv, size_t *n,
                   bool as_headers)
{
    if (is_null_node(val))
        return;
    if (val->type != YAML_MAPPING_NODE) {
        ERR(w, val, "expected a mapping of names to strings, got %s", kind_name(val));
        return;
    }
    struct pairs ps;
    collect_pairs(w, val, &ps);
    for (size_t i = 0; i < ps.n && !w->stop; i++) {
        if (ps.v[i].drop)
            continue;
        size_t mark = path_name(w, ps.v[i].k);
        char *s = NULL;
        if (as_headers && !header_name_ok(ps.v[i].k))
            ERR(w, ps.v[i].key, "invalid header name");
        else if (scalar(w, ps.v[i].val, "a string", &s) == SC_BAD)
            ;
        else if (as_headers && s && strpbrk(s, "\r\n"))
            ERR(w, ps.v[i].val, "header value must not contain CR or LF");
        else {
            *kv = lp_xrealloc(*kv, (*n + 1) * sizeof **kv);
            (*kv)[(*n)++] = (struct lp_kv){lp_xstrdup(ps.v[i].k), s ? s : lp_xstrdup("")};
            s = NULL;
        }
        free(s);
        path_pop(w, mark);
    }
    free(ps.v);
}

/* The protocol names a config may use. Besides openai and anthropic, the reference's examples
 * name providers (azure, deepseek, groq, mistral, cohere, later google); every provider that
 * speaks the OpenAI API under its own name maps to the OpenAI row. */
static const struct {
    const char *name;
    enum lp_dialect_id dialect;
} protocol_names[] = {
    {"openai", LP_DIALECT_OPENAI},
    {"anthropic", LP_DIALECT_ANTHROPIC},
    {"google", LP_DIALECT_GOOGLE},
    {"gemini", LP_DIALECT_GOOGLE},
    {"vertex", LP_DIALECT_GOOGLE},
    {"vertex_ai", LP_DIALECT_GOOGLE},
    {"azure", LP_DIALECT_AZURE},
    {"azure-openai", LP_DIALECT_AZURE},
    {"azure_openai", LP_DIALECT_AZURE},
    {"cohere", LP_DIALECT_COHERE},
    {"deepseek", LP_DIALECT_OPENAI},
    {"groq", LP_DIALECT_OPENAI},
    {"mistral", LP_DIALECT_OPENAI},
    {"openai-compatible", LP_DIALECT_OPENAI},
    {"openai_compatible", LP_DIALECT_OPENAI},
    {"custom", LP_DIALECT_OPENAI},
    {"together", LP_DIALECT_OPENAI},
    {"fireworks", LP_DIALECT_OPENAI},
    {"openrouter", LP_DIALECT_OPENAI},
    {"perplexity", LP_DIALECT_OPENAI},
    {"xai", LP_DIALECT_OPENAI},
    {"grok", LP_DIALECT_OPENAI},
    {"ollama", LP_DIALECT_OPENAI},
    {"vllm", LP_DIALECT_OPENAI},
    {"lmstudio", LP_DIALECT_OPENAI},
    {"llamacpp", LP_DIALECT_OPENAI},
    {"localai", LP_DIALECT_OPENAI},
    {"deepinfra", LP_DIALECT_OPENAI},
    {"cerebras", LP_DIALECT_OPENAI},
    {"sambanova", LP_DIALECT_OPENAI},
    {"nvidia", LP_DIALECT_OPENAI},
    {"moonshot", LP_DIALECT_OPENAI},
    {"qwen", LP_DIALECT_OPENAI},
    {"dashscope", LP_DIALECT_OPENAI},
    {"zhipu", LP_DIALECT_OPENAI},
    {"glm", LP_DIALECT_OPENAI},
    {"minimax", LP_DIALECT_OPENAI},
    {"siliconflow", LP_DIALECT_OPENAI},
    {"volcengine", LP_DIALECT_OPENAI},
    {"doubao", LP_DIALECT_OPENAI},
    {"huggingface", LP_DIALECT_OPENAI},
    {"anyscale", LP_DIALECT_OPENAI},
    {"hyperbolic", LP_DIALECT_OPENAI},
    {"novita", LP_DIALECT_OPENAI},
};

/* A known protocol name (case-insensitive) sets the wire protocol and the dialect; anything
 * else is an error that lists the names. */
static bool parse_protocol(struct lp_config_walk *w, yaml_node_t *val, enum lp_proto *proto,
                           enum lp_dialect_id *dialect, char **name)
{
    char *s;
    if (typed_scalar(w, val, "a protocol name", &s) != SC_OK)
        return false;
    for (size_t i = 0; i < sizeof protocol_names / sizeof protocol_names[0]; i++) {
        if (strcasecmp(s, protocol_names[i].name) == 0) {
            *proto = lp_dialect_get(protocol_names[i].dialect)->wire;
            if (dialect)
                *dialect = protocol_names[i].dialect;
            if (name) {
                free(*name);
                *name = s;
            } else {
                free(s);
            }
            return true;
        }
    }
    ERR(w, val,
        "unknown protocol \"%.64s\" (expected openai, anthropic, google, azure, or an "
        "OpenAI-compatible "
        "provider such as deepseek, groq, mistral, cohere, openrouter, ollama or vllm; any "
        "OpenAI-compatible server works as \"openai\")",
        s);
    free(s);
    return false;
}

/* The value node a mapping writes for `key` itself (merged keys aside), or NULL. */
static yaml_node_t *own_value(struct lp_config_walk *w, yaml_node_t *map, const char *key)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(w->doc, p->key);
        if (k && k->type == YAML_SCALAR_NODE &&
            strcmp((const char *)k->data.scalar.value, key) == 0)
            return yaml_document_get_node(w->doc, p->value);
    }
    return NULL;
}

/* A required key that ended up unset: absent or null is reported here; a present but invalid
 * value already had its own error, so another one would only be noise. */
static void require(struct lp_config_walk *w, yaml_node_t *map, const char *key, const void *val)
{
    if (val)
        return;
    yaml_node_t *v = own_value(w, map, key);
    if (!v)
        ERR(w, map, "missing required key \"%s\"", key);
    else if (is_null_node(v))
        ERR(w, v, "\"%s\" must not be empty", key);
}

/* ---- timeouts ----------------------------------------------------------------------------- */

/* clang-format off */
static const struct field timeout_fields[] = {
    VAL("connect_timeout", K_DUR, struct lp_timeouts, connect_ms),
    VAL("read_timeout", K_DUR, struct lp_timeouts, read_ms),
    VAL("write_timeout", K_DUR, struct lp_timeouts, write_ms),
    VAL("total_timeout", K_DUR, struct lp_timeouts, total_ms),
    VAL("ttft_timeout", K_DUR, struct lp_timeouts, ttft_ms),
    END,
};
/* clang-format on */

/* ---- backends ----------------------------------------------------------------------------- */

static void on_backend_name(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    struct lp_backend *b = target;
    if (!set_str(w, val, &b->name))
        return;
    if (b->name[0] == '\0') {
        ERR(w, val, "backend name must not be empty");
        return;
    }
    long prev = lp_config_find_backend(w->cfg, b->name);
    if (prev >= 0)
        ERR(w, val, "duplicate backend \"%.64s\" (first defined at line %d)", b->name,
            w->cfg->backends[prev].line);
}

static void on_backend_url(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    struct lp_backend *b = target;
    if (!set_str(w, val, &b->url))
        return;
    const char *why = lp_config_url_problem(b->url);
    if (why) {
        ERR(w, val, "invalid URL \"%.80s\": %s", b->url, why);
        return;
    }
    /* Strip trailing slashes so that joining "/chat/completions" never doubles one. The host is
     * non-empty, so this never eats into "scheme://". */
    size_t n = strlen(b->url);
    while (n > 0 && b->url[n - 1] == '/')
        b->url[--n] = '\0';
}

/* A CA bundle for a backend with a private CA: resolved against the config file's directory and
 * checked to be readable now, so a typo is a load error, not a TLS failure at request time. */
static void on_backend_tls_ca_file(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    struct lp_backend *b = target;
    if (!set_str(w, val, &b->tls_ca_file))
        return;
    if (b->tls_ca_file[0] != '/' && w->cfg->dir && w->cfg->dir[0]) {
        char *abs = lp_xasprintf("%s/%s", w->cfg->dir, b->tls_ca_file);
        free(b->tls_ca_file);
        b->tls_ca_file = abs;
    }
    /* Read now, at load: the own upstream client builds its trust store from the text on the
     * loop, where no disk I/O may happen. */
    size_t len = 0;
    int err = 0;
    free(b->tls_ca_pem);
    b->tls_ca_pem = lp_config_read_file(b->tls_ca_file, &len, &err);
    if (!b->tls_ca_pem) {
        ERR(w, val, "cannot read tls_ca_file \"%.200s\": %s", b->tls_ca_file, strerror(err));
        return;
    }
    b->tls_ca_pem[len] = '\0';
}

static void on_backend_protocol(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    struct lp_backend *b = target;
    parse_protocol(w, val, &b->protocol, &b->dialect, &b->protocol_name);
}

/* Azure's `api-version` query value: a date (YYYY-MM-DD) with an optional suffix such as
 * "-preview"; only meaningful for protocol azure (warned otherwise, after the walk). */
static void on_backend_api_version(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    struct lp_backend *b = target;
    if (!set_str(w, val, &b->api_version))
        return;
    const char *v = b->api_version;
    bool ok = strlen(v) >= 10 && strlen(v) <= 40;
    for (size_t i = 0; ok && v[i]; i++) {
        char c = v[i];
        if (i < 10)
            ok = (i == 4 || i == 7) ? c == '-' : (c >= '0' && c <= '9');
        else
            ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
    }
    if (!ok) {
        ERR(w, val, "api_version \"%.64s\" is not an Azure API version (e.g. \"2024-10-21\")", v);
        LP_FREE(&b->api_version);
        LP_FREE(&b->max_tokens_param);
        LP_FREE(&b->health_check.path);
        for (size_t i = 0; i < b->n_drop_params; i++)
            LP_FREE(&b->drop_params[i]);
        LP_FREE(&b->drop_params);
        b->n_drop_params = 0;
    }
}

static void on_backend_max_tokens_param(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    struct lp_backend *b = target;
    if (!set_str(w, val, &b->max_tokens_param))
        return;
    if (strcmp(b->max_tokens_param, "max_tokens") != 0 &&
        strcmp(b->max_tokens_param, "max_completion_tokens") != 0) {
        ERR(w, val, "max_tokens_param must be max_tokens or max_completion_tokens, got \"%.64s\"",
            b->max_tokens_param);
        LP_FREE(&b->max_tokens_param);
        LP_FREE(&b->health_check.path);
    }
}

static void on_backend_drop_params(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    struct lp_backend *b = target;
    str_list(w, val, &b->drop_params, &b->n_drop_params);
    for (size_t i = 0; i < b->n_drop_params; i++)
        if (!strcmp(b->drop_params[i], "model") || !strcmp(b->drop_params[i], "messages") ||
            !strcmp(b->drop_params[i], "contents"))
            ERR(w, val, "drop_params must not name \"%s\": the request would be empty",
                b->drop_params[i]);
}

static void on_health_check_path(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    struct lp_health_check *hc = target;
    if (!set_str(w, val, &hc->path))
        return;
    const char *why = NULL;
    bool url = !strncmp(hc->path, "http://", 7) || !strncmp(hc->path, "https://", 8);
    if (url ? (why = lp_config_url_problem(hc->path)) != NULL
            : (hc->path[0] != '/' || !lp_endpoint_path_safe(hc->path, &why))) {
        ERR(w, val, "health_check.path \"%.100s\": %s", hc->path,
            why ? why : "must start with '/' or be an http(s) URL");
        LP_FREE(&hc->path);
    }
}

/* clang-format off */
static const struct field health_check_fields[] = {
    FN("path", on_health_check_path),
    VAL("interval", K_DUR, struct lp_health_check, interval_ms),
    VAL("timeout", K_DUR, struct lp_health_check, timeout_ms),
    NUM("healthy_after", K_INT, struct lp_health_check, healthy_after, 1, 100),
    NUM("unhealthy_after", K_INT, struct lp_health_check, unhealthy_after, 1, 100),
    VAL("idle_interval", K_DUR, struct lp_health_check, idle_interval_ms),
    END,
};
/* clang-format on */

/* health_check: {path, interval, timeout, healthy_after, unhealthy_after, idle_interval}; `true`
 * takes every default; `false`/null turns it off. */
static void on_backend_health_check(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    struct lp_backend *b = target;
    struct lp_health_check *hc = &b->health_check;
    LP_FREE(&hc->path);
    *hc = (struct lp_health_check){
        .interval_ms = 10000, .timeout_ms = 2000, .healthy_after = 1, .unhealthy_after = 3};
    if (val->type == YAML_MAPPING_NODE) {
        hc->enabled = true;
        walk_map(w, val, health_check_fields, hc);
    } else if (!is_null_node(val)) {
        bool on = false;
        if (get_bool(w, val, &on))
            hc->enabled = on;
    }
    if (hc->interval_ms < 100 || hc->timeout_ms < 10) {
        ERR(w, val, "health_check: interval must be at least 100ms and timeout at least 10ms");
        hc->enabled = false;
    }
    if (hc->idle_interval_ms != 0 && hc->idle_interval_ms < 1000)
        ERR(w, val, "health_check.idle_interval must be 0 (off) or at least 1s");
}

/* `timeout: 60s` (the reference example's form) overrides total_timeout; a mapping overrides
 * key by key. Unset keys stay 0 here and are filled from the global block after the walk. */
static void on_backend_timeout(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    struct lp_backend *b = target;
    if (val->type == YAML_SCALAR_NODE)
        get_duration(w, val, &b->timeout.total_ms);
    else if (val->type == YAML_MAPPING_NODE)
        walk_map(w, val, timeout_fields, &b->timeout);
    else
        ERR(w, val, "expected a duration or a mapping of timeouts, got %s", kind_name(val));
}

static void on_backend_headers(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    struct lp_backend *b = target;
    kv_map(w, val, &b->headers, &b->n_headers, true);
}

/* clang-format off */
static const struct field backend_fields[] = {
    FN("name", on_backend_name),
    FN("url", on_backend_url),
    VAL("api_key", K_STR, struct lp_backend, api_key),
    FN("api_version", on_backend_api_version),
    FN("max_tokens_param", on_backend_max_tokens_param),
    FN("drop_params", on_backend_drop_params),
    FN("health_check", on_backend_health_check),
    VAL("enabled", K_BOOL, struct lp_backend, enabled),
    FN("protocol", on_backend_protocol),
    VAL("locale", K_STR, struct lp_backend, locale),
    FN("tls_ca_file", on_backend_tls_ca_file),
    FN("timeout", on_backend_timeout),
    FN("headers", on_backend_headers),
    NUM("max_tokens", K_INT64, struct lp_backend, max_tokens, 0, INT32_MAX),
    NUM("max_concurrent", K_INT, struct lp_backend, max_concurrent, 0, 100000),
    VAL("adaptive_concurrency", K_BOOL, struct lp_backend, adaptive_concurrency),
    VAL("http2", K_BOOL, struct lp_backend, http2),
    END,
};
/* clang-format on */

static void free_backend(struct lp_backend *b)
{
    LP_FREE(&b->name);
    LP_FREE(&b->url);
    LP_FREE(&b->api_key);
    LP_FREE(&b->protocol_name);
    LP_FREE(&b->api_version);
    LP_FREE(&b->max_tokens_param);
    LP_FREE(&b->health_check.path);
    for (size_t i = 0; i < b->n_drop_params; i++)
        LP_FREE(&b->drop_params[i]);
    LP_FREE(&b->drop_params);
    b->n_drop_params = 0;
    LP_FREE(&b->locale);
    LP_FREE(&b->tls_ca_file);
    LP_FREE(&b->tls_ca_pem);
    for (size_t i = 0; i < b->n_headers; i++) {
        LP_FREE(&b->headers[i].key);
        LP_FREE(&b->headers[i].value);
    }
    LP_FREE(&b->headers);
    b->n_headers = 0;
}

/* A Gemini URL written with `?key=...` (as Google's curl examples do) would put the key in every
 * log line that shows the URL: move it to api_key (sent as x-goog-api-key) with a warning that
 * never shows the key. When api_key is set too, api_key wins and the URL's key is dropped. */
static void google_key_from_url(struct lp_config_walk *w, yaml_node_t *item, struct lp_backend *b)
{
    char *q = strchr(b->url, '?');
    if (!q)
        return;
    struct lp_buf rest;
    lp_buf_init(&rest, 0);
    char *key = NULL;
    for (char *p = q + 1; *p;) {
        size_t n = strcspn(p, "&#");
        if (n > 4 && strncmp(p, "key=", 4) == 0) {
            free(key);
            key = lp_xstrndup(p + 4, n - 4);
        } else if (n > 0) {
            if (rest.len)
                lp_buf_appendc(&rest, '&');
            lp_buf_append(&rest, p, n);
        }
        p += n;
        if (*p == '#')
            break;
        if (*p)
            p++;
    }
    if (!key) {
        lp_buf_free(&rest);
        return;
    }
    yaml_node_t *at = own_value(w, item, "url") ? own_value(w, item, "url") : item;
    if (b->api_key && b->api_key[0]) {
        WARN(w, at,
             "backend \"%.64s\": the key in the url's ?key= is ignored (api_key is set); "
             "remove it from the url, URLs are logged",
             b->name);
        free(key);
    } else {
        WARN(w, at,
             "backend \"%.64s\": the url's ?key= was moved to api_key (sent as "
             "x-goog-api-key, never in the URL); write it as api_key, URLs are logged",
             b->name);
        free(b->api_key);
        b->api_key = key;
    }
    *q = '\0';
    if (rest.len) {
        char *u = lp_xasprintf("%s?%s", b->url, rest.data);
        free(b->url);
        b->url = u;
    }
    lp_buf_free(&rest);
}

static void on_backend_item(struct lp_config_walk *w, yaml_node_t *item, size_t i, void *arg)
{
    struct lp_config *cfg = w->cfg;
    if (item->type != YAML_MAPPING_NODE) {
        ERR(w, item, "expected a mapping (a backend), got %s", kind_name(item));
        return;
    }
    struct lp_backend b = {.enabled = true,
                           .protocol = LP_PROTO_OPENAI,
                           .protocol_name = lp_xstrdup("openai"),
                           .line = line_of(item),
                           .col = col_of(item)};
    walk_map(w, item, backend_fields, &b);
    if (w->stop) { /* the walk was cut short: missing keys are not the user's problem */
        free_backend(&b);
        return;
    }
    require(w, item, "name", b.name);
    require(w, item, "url", b.url);
    if (!b.name || !b.url) {
        free_backend(&b);
        return;
    }
    if (b.dialect == LP_DIALECT_GOOGLE)
        google_key_from_url(w, item, &b);
    if (b.api_version && b.dialect != LP_DIALECT_AZURE)
        WARN(w, own_value(w, item, "api_version") ? own_value(w, item, "api_version") : item,
             "api_version only applies to protocol azure (backend \"%.64s\")", b.name);
    cfg->backends[cfg->n_backends++] = b;
}

static void on_backends(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    struct lp_config *cfg = w->cfg;
    size_t n = val->type == YAML_SEQUENCE_NODE
                   ? (size_t)(val->data.sequence.items.top - val->data.sequence.items.start)
                   : 0;
    w->saw_backends = true;
    if (val->type != YAML_SEQUENCE_NODE && !is_null_node(val)) {
        ERR(w, val, "expected a list of backends, got %s", kind_name(val));
        return;
    }
    if (n == 0) {
        ERR(w, val, "at least one backend is required");
        return;
    }
    cfg->backends = lp_xcalloc(n, sizeof *cfg->backends);
    walk_list(w, val, "a list of backends", on_backend_item, NULL);
}

/* ---- models: aliases and routes ----------------------------------------------------------- */

static void on_route_backend(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    struct lp_route *r = target;
    if (!set_str(w, val, &r->backend))
        return;
    long idx = lp_config_find_backend(w->cfg, r->backend);
    if (idx < 0)
        ERR(w, val, "unknown backend \"%.64s\"", r->backend);
    else
        r->backend_idx = (size_t)idx;
}

static void on_route_protocol(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    struct lp_route *r = target;
    if (parse_protocol(w, val, &r->protocol, NULL, NULL))
        r->has_protocol = true;
}

static void on_xlat_unsupported(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    static const struct enum_name names[] = {{"reject", LP_XLAT_REJECT}, {"drop", LP_XLAT_DROP}};
    int v;
    if (enum_value(w, val, names, 2, "invalid value", "reject or drop", &v))
        *(enum lp_xlat_unsupported *)target = (enum lp_xlat_unsupported)v;
}

/* clang-format off */
static const struct field translation_fields[] = {
    FNAT("unsupported", struct lp_xlat_cfg, unsupported, on_xlat_unsupported),
    END,
};
/* clang-format on */

/* clang-format off */
static const struct field route_fields[] = {
    FN("backend", on_route_backend),
    VAL("model", K_STR, struct lp_route, model),
    VAL("priority", K_INT, struct lp_route, priority),
    VAL("enabled", K_BOOL, struct lp_route, enabled),
    FN("protocol", on_route_protocol),
    NUM("max_tokens", K_INT64, struct lp_route, max_tokens, 0, INT32_MAX),
    NUM("weight", K_INT, struct lp_route, weight, 0, 1000000),
    MAPAT("translation", struct lp_route, translation, translation_fields),
    IGN("reasoning"),
    /* era C route field of unknown meaning */
    END,
};
/* clang-format on */

/* A Google backend whose URL already names a model (.../models/<name>, the reference's form)
 * calls that model; a route naming another one is warned about, since its model is not used. */
static void warn_google_model(struct lp_config_walk *w, yaml_node_t *item,
                              const struct lp_backend *b, const char *model)
{
    if (b->dialect != LP_DIALECT_GOOGLE)
        return;
    size_t plen = strcspn(b->url, "?#");
    const char *m = NULL;
    for (const char *p = b->url; (p = memmem(p, plen - (size_t)(p - b->url), "/models/", 8)); p++)
        m = p + 8;
    if (!m)
        return;
    size_t n = strcspn(m, ":?#/");
    if (n == 0 || (strlen(model) == n && !strncmp(m, model, n)))
        return;
    WARN(w, item,
         "backend \"%.64s\" calls model \"%.*s\" (named in its url); this route's model "
         "\"%.64s\" is not used",
         b->name, (int)(n > 64 ? 64 : n), m, model);
}

static void on_route_item(struct lp_config_walk *w, yaml_node_t *item, size_t i, void *arg)
{
    struct lp_alias *a = arg;
    if (item->type != YAML_MAPPING_NODE) {
        ERR(w, item, "expected a mapping (a route), got %s", kind_name(item));
        return;
    }
    struct lp_route r = {.enabled = true,
                         .backend_idx = SIZE_MAX,
                         .weight = 1,
                         .line = line_of(item),
                         .col = col_of(item)};
    walk_map(w, item, route_fields, &r);
    if (w->stop) {
        LP_FREE(&r.backend);
        LP_FREE(&r.model);
        return;
    }
    require(w, item, "backend", r.backend);
    require(w, item, "model", r.model);
    if (r.model && r.model[0] == '\0')
        ERR(w, item, "\"model\" must not be empty");
    if (r.backend_idx == SIZE_MAX || !r.model || r.model[0] == '\0') {
        LP_FREE(&r.backend);
        LP_FREE(&r.model);
        return;
    }
    warn_google_model(w, item, &w->cfg->backends[r.backend_idx], r.model);
    a->routes = lp_xrealloc(a->routes, (a->n_routes + 1) * sizeof *a->routes);
    a->routes[a->n_routes++] = r;
}

static void on_routes(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    walk_list(w, val, "a list of routes", on_route_item, target);
}

/* ---- routing: balancing and hedging (top level and per alias) ----------------------------- */

static void on_strategy(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    struct lp_routing_cfg *rc = target;
    char *s;
    if (typed_scalar(w, val, "latency, random, round_robin or weighted", &s) != SC_OK)
        return;
    static const enum lp_strategy all[] = {LP_STRATEGY_LATENCY, LP_STRATEGY_RANDOM,
                                           LP_STRATEGY_ROUND_ROBIN, LP_STRATEGY_WEIGHTED};
    bool found = false;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (strcmp(s, lp_strategy_name(all[i])) == 0) {
            rc->strategy = all[i];
            rc->strategy_set = found = true;
        }
    }
    if (!found)
        ERR(w, val,
            "unknown strategy \"%.64s\" (expected latency, random, round_robin or weighted)", s);
    free(s);
}

static void on_decay(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    struct lp_routing_cfg *rc = target;
    int64_t ms = 0;
    if (!get_duration(w, val, &ms))
        return;
    if (ms < 100 || ms > 3600000) {
        ERR(w, val, "decay must be between 100ms and 1h");
        return;
    }
    rc->decay_ms = ms;
    rc->decay_set = true;
}

/* hedge.delay: a duration ("500ms") or a percentile of the measured time to first event ("p95"). */
static void on_hedge_delay(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    struct lp_hedge_cfg *h = target;
    char *s;
    if (typed_scalar(w, val, "a duration or pNN", &s) != SC_OK)
        return;
    if (s[0] == 'p' || s[0] == 'P') {
        int64_t pct = 0;
        if (!lp_config_parse_int(s + 1, &pct) || pct < 50 || pct > 99)
            ERR(w, val, "invalid percentile \"%.64s\" (expected p50 .. p99)", s);
        else
            h->delay_pct = (int)pct;
    } else {
        int64_t ms = 0;
        if (!lp_duration_parse(s, &ms) || ms <= 0 || ms > 600000)
            ERR(w, val,
                "invalid delay \"%.64s\" (a duration up to 10m such as 500ms, or p50 .. p99)", s);
        else {
            h->delay_ms = ms;
            h->delay_pct = 0;
        }
    }
    free(s);
}

/* clang-format off */
static const struct field hedge_fields[] = {
    FN("delay", on_hedge_delay),
    NUM("max_extra", K_INT, struct lp_hedge_cfg, max_extra, 0, 3),
    NUM("budget_percent", K_INT, struct lp_hedge_cfg, budget_percent, 1, 100),
    END,
};
/* clang-format on */

static void on_hedge(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    struct lp_routing_cfg *rc = target;
    if (is_null_node(val))
        return;
    if (val->type != YAML_MAPPING_NODE) {
        ERR(w, val, "expected a mapping (delay, max_extra, budget_percent), got %s",
            kind_name(val));
        return;
    }
    rc->hedge = (struct lp_hedge_cfg){.delay_ms = 500, .max_extra = 1, .budget_percent = 10};
    walk_map(w, val, hedge_fields, &rc->hedge);
    rc->hedge.enabled = rc->hedge.max_extra > 0;
    rc->hedge_set = true;
}

/* clang-format off */
static const struct field routing_fields[] = {
    FN("strategy", on_strategy),
    FN("decay", on_decay),
    FN("hedge", on_hedge),
    END,
};
/* clang-format on */

static void on_routing(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    walk_map(w, val, routing_fields, target);
}

/* clang-format off */
static const struct field alias_fields[] = {
    VAL("enabled", K_BOOL, struct lp_alias, enabled),
    FN("routes", on_routes),
    FNAT("routing", struct lp_alias, routing, on_routing),
    MAPAT("translation", struct lp_alias, translation, translation_fields),
    END,
};
/* clang-format on */

static void parse_alias(struct lp_config_walk *w, const struct pair *p)
{
    struct lp_config *cfg = w->cfg;
    struct lp_alias a = {
        .name = lp_xstrdup(p->k), .enabled = true, .line = line_of(p->key), .col = col_of(p->key)};
    if (a.name[0] == '\0')
        ERR(w, p->key, "alias name must not be empty");
    if (p->val->type == YAML_MAPPING_NODE)
        walk_map(w, p->val, alias_fields, &a);
    else if (p->val->type == YAML_SEQUENCE_NODE) /* era A: alias: [ {backend, model, ...} ] */
        on_routes(w, p->val, &a);
    else if (!is_null_node(p->val))
        ERR(w, p->val, "expected a mapping with \"routes\" or a list of routes, got %s",
            kind_name(p->val));
    cfg->aliases[cfg->n_aliases++] = a;
}

static int cmp_alias(const void *a, const void *b)
{
    return strcmp(((const struct lp_alias *)a)->name, ((const struct lp_alias *)b)->name);
}

static void on_models(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    struct lp_config *cfg = w->cfg;
    if (is_null_node(val))
        return;
    if (val->type != YAML_MAPPING_NODE) {
        ERR(w, val, "expected a mapping of alias names, got %s", kind_name(val));
        return;
    }
    struct pairs ps;
    collect_pairs(w, val, &ps);
    cfg->aliases = lp_xcalloc(ps.n ? ps.n : 1, sizeof *cfg->aliases);
    for (size_t i = 0; i < ps.n && !w->stop; i++) {
        if (ps.v[i].drop)
            continue;
        size_t mark = path_name(w, ps.v[i].k);
        parse_alias(w, &ps.v[i]);
        path_pop(w, mark);
    }
    free(ps.v);
    /* Sorted now, so alias_fallback (walked after models) can already look aliases up. */
    qsort(cfg->aliases, cfg->n_aliases, sizeof *cfg->aliases, cmp_alias);
}

/* ---- fallback ----------------------------------------------------------------------------- */

struct fb_ctx {
    struct lp_alias *alias;
};

static void on_fallback_item(struct lp_config_walk *w, yaml_node_t *item, size_t i, void *arg)
{
    struct fb_ctx *c = arg;
    char *s;
    if (scalar(w, item, "an alias name", &s) != SC_OK)
        return;
    if (!lp_config_find_alias(w->cfg, s, strlen(s)))
        WARN(w, item, "alias_fallback names unknown alias \"%.64s\"", s);
    else if (strcmp(s, c->alias->name) == 0)
        WARN(w, item, "alias \"%.64s\" falls back to itself", s);
    push_str(&c->alias->fallbacks, &c->alias->n_fallbacks, s);
}

static void on_alias_fallback(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    if (is_null_node(val))
        return;
    if (val->type != YAML_MAPPING_NODE) {
        ERR(w, val, "expected a mapping of alias -> list of aliases, got %s", kind_name(val));
        return;
    }
    struct pairs ps;
    collect_pairs(w, val, &ps);
    for (size_t i = 0; i < ps.n && !w->stop; i++) {
        if (ps.v[i].drop)
            continue;
        size_t mark = path_name(w, ps.v[i].k);
        /* find_alias returns const because published snapshots are immutable; this one is
         * still being built. */
        struct fb_ctx c = {
            (struct lp_alias *)lp_config_find_alias(w->cfg, ps.v[i].k, strlen(ps.v[i].k))};
        if (!c.alias)
            WARN(w, ps.v[i].key, "alias_fallback for unknown alias (ignored)");
        else if (ps.v[i].val->type == YAML_SCALAR_NODE && !is_null_node(ps.v[i].val))
            on_fallback_item(w, ps.v[i].val, 0, &c);
        else
            walk_list(w, ps.v[i].val, "a list of alias names", on_fallback_item, &c);
        path_pop(w, mark);
    }
    free(ps.v);
}

static void on_when_all_cooling(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    static const struct enum_name names[] = {{"fail", LP_ALL_COOLING_FAIL},
                                             {"try_soonest", LP_ALL_COOLING_TRY_SOONEST}};
    int v;
    if (enum_value(w, val, names, 2, "invalid value", "fail or try_soonest", &v))
        *(enum lp_when_all_cooling *)target = (enum lp_when_all_cooling)v;
}

/* The reference resets an out-of-range jitter to 0.1; we do too, but say so. */
static void on_backoff_jitter(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    double *out = target, v;
    if (!get_float(w, val, &v))
        return;
    if (v < 0.0 || v > 1.0) {
        WARN(w, val, "backoff_jitter %g is outside [0, 1]; using 0.1", v);
        v = 0.1;
    }
    *out = v;
}

static void on_backoff_multiplier(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    double *out = target, v;
    if (!get_float(w, val, &v))
        return;
    if (v < 1.0 || v > 100.0) {
        WARN(w, val, "backoff_multiplier %g is outside [1, 100]; using 2.0", v);
        v = 2.0;
    }
    *out = v;
}

/* clang-format off */
static const struct field fallback_fields[] = {
    VAL("cooldown_seconds", K_INT, struct lp_fallback_cfg, cooldown_seconds),
    VAL("max_retries", K_INT, struct lp_fallback_cfg, max_retries,
        .has = HAS(struct lp_fallback_cfg, max_retries_set)),
    FN("alias_fallback", on_alias_fallback),
    VAL("enable_backoff", K_BOOL, struct lp_fallback_cfg, enable_backoff),
    NUM("backoff_initial_delay", K_INT, struct lp_fallback_cfg, backoff_initial_ms, 0, 3600000),
    NUM("backoff_max_delay", K_INT, struct lp_fallback_cfg, backoff_max_ms, 0, 3600000),
    FNAT("backoff_multiplier", struct lp_fallback_cfg, backoff_multiplier, on_backoff_multiplier),
    FNAT("backoff_jitter", struct lp_fallback_cfg, backoff_jitter, on_backoff_jitter),
    VAL("enable_circuit_breaker", K_BOOL, struct lp_fallback_cfg, enable_circuit_breaker),
    NUM("circuit_failure_threshold", K_INT, struct lp_fallback_cfg, circuit_failure_threshold,
        1, 1000000),
    NUM("circuit_success_threshold", K_INT, struct lp_fallback_cfg, circuit_success_threshold,
        1, 1000000),
    NUM("circuit_open_timeout", K_INT, struct lp_fallback_cfg, circuit_open_timeout_s, 1, 86400),
    NUM("circuit_half_open_max", K_INT, struct lp_fallback_cfg, circuit_half_open_max, 1, 1000000),
    FNAT("when_all_cooling", struct lp_fallback_cfg, when_all_cooling, on_when_all_cooling),
    END,
};
/* clang-format on */

/* ---- detection and error_fallback --------------------------------------------------------- */

/* "429" or a class wildcard "4xx": anything else can never match a status. */
static bool status_pattern_ok(const char *s)
{
    if (strlen(s) != 3 || s[0] < '1' || s[0] > '5')
        return false;
    if ((s[1] == 'x' || s[1] == 'X') && (s[2] == 'x' || s[2] == 'X'))
        return true;
    return isdigit((unsigned char)s[1]) && isdigit((unsigned char)s[2]);
}

static void on_error_code_item(struct lp_config_walk *w, yaml_node_t *item, size_t i, void *arg)
{
    struct lp_detection_cfg *d = arg;
    char *s;
    if (scalar(w, item, "a status code or class", &s) != SC_OK) /* era A wrote ints: same text */
        return;
    if (!status_pattern_ok(s))
        WARN(w, item, "error code \"%.32s\" never matches (expected e.g. \"429\" or \"5xx\")", s);
    push_str(&d->error_codes, &d->n_error_codes, s);
}

static void on_error_codes(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    walk_list(w, val, "a list of status codes", on_error_code_item, target);
}

static void on_error_patterns(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    struct lp_detection_cfg *d = target;
    str_list(w, val, &d->error_patterns, &d->n_error_patterns);
}

/* clang-format off */
static const struct field detection_fields[] = {
    FN("error_codes", on_error_codes),
    FN("error_patterns", on_error_patterns),
    END,
};
/* clang-format on */

static void on_client_code_item(struct lp_config_walk *w, yaml_node_t *item, size_t i, void *arg)
{
    struct lp_error_fallback_cfg *e = arg;
    int64_t v = 0;
    if (!get_int(w, item, 100, 599, &v))
        return;
    e->client_codes = lp_xrealloc(e->client_codes, (e->n_client_codes + 1) * sizeof(int));
    e->client_codes[e->n_client_codes++] = (int)v;
}

static void on_client_codes(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    walk_list(w, val, "a list of status codes", on_client_code_item, target);
}

static void on_client_patterns(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    struct lp_error_fallback_cfg *e = target;
    str_list(w, val, &e->client_patterns, &e->n_client_patterns);
}

/* clang-format off */
static const struct field server_error_fields[] = {
    VAL("enabled", K_BOOL, struct lp_error_fallback_cfg, server_error_enabled),
    END,
};
/* clang-format on */

/* clang-format off */
static const struct field client_error_fields[] = {
    VAL("enabled", K_BOOL, struct lp_error_fallback_cfg, client_error_enabled),
    FN("codes", on_client_codes),
    FN("patterns", on_client_patterns),
    END,
};
/* clang-format on */

/* clang-format off */
static const struct field error_fallback_fields[] = {
    MAP("server_error", server_error_fields),
    MAP("client_error", client_error_fields),
    END,
};
/* clang-format on */

static void on_error_fallback(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    struct lp_error_fallback_cfg *e = target;
    if (is_null_node(val))
        return;
    if (val->type == YAML_MAPPING_NODE)
        e->present = true;
    walk_map(w, val, error_fallback_fields, e);
}

/* ---- proxy, server, logging, top level ---------------------------------------------------- */

static void on_custom_variables(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    struct lp_proxy_cfg *p = target;
    kv_map(w, val, &p->custom_variables, &p->n_custom_variables, false);
}

/* clang-format off */
static const struct field system_prompt_fields[] = {
    FN("custom_variables", on_custom_variables),
    END,
};
/* clang-format on */

/* clang-format off */
static const struct field proxy_fields[] = {
    VAL("enable_system_prompt", K_BOOL, struct lp_proxy_cfg, enable_system_prompt),
    VAL("forward_client_ip", K_BOOL, struct lp_proxy_cfg, forward_client_ip),
    MAP("system_prompt", system_prompt_fields),
    NUM("default_max_tokens", K_INT64, struct lp_proxy_cfg, default_max_tokens, 1, INT32_MAX),
    END,
};
/* clang-format on */

static void on_trusted_proxies(struct lp_config_walk *w, yaml_node_t *val, void *target);

/* clang-format off */
static const struct field server_fields[] = {
    NUM("max_body_size", K_SIZE, struct lp_server_cfg, max_body_size, 1, INT64_MAX),
    NUM("max_header_size", K_SIZE, struct lp_server_cfg, max_header_size, 1024, 64 << 20),
    VAL("idle_timeout", K_DUR, struct lp_server_cfg, idle_timeout_ms),
    NUM("threads", K_INT, struct lp_server_cfg, threads, 0, 1024),
    VAL("shutdown_timeout", K_DUR, struct lp_server_cfg, shutdown_timeout_ms),
    VAL("body_timeout", K_DUR, struct lp_server_cfg, body_timeout_ms),
    NUM("min_body_rate", K_SIZE, struct lp_server_cfg, min_body_rate, 0, 1LL << 40),
    NUM("max_connections", K_INT, struct lp_server_cfg, max_connections, 0, 1 << 24),
    NUM("max_connections_per_ip", K_INT, struct lp_server_cfg, max_connections_per_ip, 0, 1 << 24),
    NUM("max_body_memory", K_SIZE, struct lp_server_cfg, max_body_memory, 1, INT64_MAX),
    FN("trusted_proxies", on_trusted_proxies),
    END,
};
/* clang-format on */

/* The server block, plus the checks that involve two of its keys. */
static void on_server(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    struct lp_server_cfg *s = target;
    walk_map(w, val, server_fields, s);
    if (s->max_body_memory < s->max_body_size)
        ERR(w, val,
            "max_body_memory (%lld bytes) is smaller than max_body_size (%lld bytes): a body of "
            "the largest allowed size could never be accepted; raise max_body_memory",
            (long long)s->max_body_memory, (long long)s->max_body_size);
    if (s->max_connections > 0 && s->max_connections_per_ip > s->max_connections)
        WARN(w, val,
             "max_connections_per_ip (%d) is above max_connections (%d); the total cap applies",
             s->max_connections_per_ip, s->max_connections);
}

/* zap's level names map onto ours; "none" etc. fall back to info with a warning. */
static void on_log_level(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    char **slot = target, *s;
    static const char *const names[][2] = {
        {"debug", "debug"}, {"info", "info"},    {"warn", "warn"},   {"warning", "warn"},
        {"error", "error"}, {"dpanic", "error"}, {"panic", "error"}, {"fatal", "error"},
    };
    if (typed_scalar(w, val, "a log level", &s) != SC_OK)
        return;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcasecmp(s, names[i][0]) == 0) {
            free(*slot);
            *slot = lp_xstrdup(names[i][1]);
            free(s);
            return;
        }
    }
    WARN(w, val, "unknown log level \"%.32s\" (expected debug, info, warn or error); using info",
         s);
    free(s);
}

/* rotation.time_strategy (v2.1) / time_rotation (era B): daily, hourly or none. */
static void on_time_strategy(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    int *slot = target;
    char *s;
    if (typed_scalar(w, val, "daily, hourly or none", &s) != SC_OK)
        return;
    if (strcasecmp(s, "daily") == 0)
        *slot = LP_ROTATE_DAILY;
    else if (strcasecmp(s, "hourly") == 0)
        *slot = LP_ROTATE_HOURLY;
    else if (strcasecmp(s, "none") == 0 || strcasecmp(s, "off") == 0)
        *slot = LP_ROTATE_TIME_NONE;
    else
        ERR(w, val, "unknown time rotation \"%.32s\" (expected daily, hourly or none)", s);
    free(s);
}

/* max_size_mb / max_file_size_mb: megabytes (fractions allowed), >= 0 (0 = no size limit). */
static void on_size_mb(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    double v = 0;
    if (!get_float(w, val, &v))
        return;
    if (!(v >= 0 && v <= 1048576))
        ERR(w, val, "expected a size in MB between 0 and 1048576");
    else
        *(double *)target = v;
}

#define ROT(m) rotation.m
/* clang-format off */
static const struct field rotation_fields[] = {
    FNAT("max_size_mb", struct lp_log_rotation_cfg, max_size_mb, on_size_mb),
    FNAT("time_strategy", struct lp_log_rotation_cfg, time_strategy, on_time_strategy),
    NUM("max_age_days", K_INT64, struct lp_log_rotation_cfg, max_age_days, 0, 36500,
        .has = HAS(struct lp_log_rotation_cfg, max_age_set)),
    NUM("max_backups", K_INT64, struct lp_log_rotation_cfg, max_backups, 0, 100000,
        .has = HAS(struct lp_log_rotation_cfg, max_backups_set)),
    VAL("compress", K_BOOL, struct lp_log_rotation_cfg, compress,
        .has = HAS(struct lp_log_rotation_cfg, compress_set)),
    END,
};

static const struct field logging_fields[] = {
    FNAT("level", struct lp_logging_cfg, level, on_log_level),
    VAL("mask_sensitive", K_BOOL, struct lp_logging_cfg, mask_sensitive),
    VAL("base_dir", K_STR, struct lp_logging_cfg, base_dir),
    VAL("access_log", K_STR, struct lp_logging_cfg, access_log),
    VAL("error_log", K_STR, struct lp_logging_cfg, error_log),
    VAL("log_bodies", K_BOOL, struct lp_logging_cfg, log_bodies),
    NUM("max_body_log_bytes", K_SIZE, struct lp_logging_cfg, max_body_log_bytes, 0, 1 << 30),
    /* era A */
    IGN("general_file"), IGN("separate_files"), IGN("request_dir"), IGN("error_dir"),
    IGN("enable_metrics"),
    FNAT("max_file_size_mb", struct lp_logging_cfg, ROT(max_size_mb), on_size_mb),
    /* era B flat / compat: rotation keys (the same fields as the v2.1 block) */
    NUM("max_age_days", K_INT64, struct lp_logging_cfg, ROT(max_age_days), 0, 36500,
        .has = HAS(struct lp_logging_cfg, ROT(max_age_set))),
    NUM("max_backups", K_INT64, struct lp_logging_cfg, ROT(max_backups), 0, 100000,
        .has = HAS(struct lp_logging_cfg, ROT(max_backups_set))),
    VAL("compress", K_BOOL, struct lp_logging_cfg, ROT(compress),
        .has = HAS(struct lp_logging_cfg, ROT(compress_set))),
    VAL("rotate_by_size", K_BOOL, struct lp_logging_cfg, ROT(rotate_by_size),
        .has = HAS(struct lp_logging_cfg, ROT(rotate_by_size_set))),
    VAL("rotate_by_time", K_BOOL, struct lp_logging_cfg, ROT(rotate_by_time),
        .has = HAS(struct lp_logging_cfg, ROT(rotate_by_time_set))),
    FNAT("time_rotation", struct lp_logging_cfg, ROT(time_strategy), on_time_strategy),
    /* era B flat / compat: not implemented */
    IGN("console_level"), IGN("format"),
    IGN("colorize"), IGN("console_style"), IGN("console_format"), IGN("debug_mode"),
    IGN("buffer_size"), IGN("flush_interval"), IGN("drop_on_full"), IGN("detailed_masking"),
    IGN("max_log_content_size"), IGN("problematic_backends"),
    /* era B multi-target */
    IGN("enable_multi_target"), IGN("console"), IGN("file"), IGN("request_body"),
    /* v2.1 (async is a bool in era B, a block in v2.1) */
    IGN("async"), IGN("categories"),
    MAPAT("rotation", struct lp_logging_cfg, rotation, rotation_fields),
    END,
};
/* clang-format on */

/* clang-format off */
static void on_redis_url(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    struct lp_redis_cfg *r = target;
    char *s;
    if (scalar(w, val, "a redis:// URL", &s) != SC_OK)
        return;
    struct lp_redis_url u;
    const char *why = NULL;
    if (!lp_redis_url_parse(s, &u, &why)) {
        ERR(w, val, "invalid Redis URL (%s); expected redis://[user:password@]host:port/db", why);
        free(s);
        return;
    }
    free(r->url);
    r->url = s;
    free(r->host);
    free(r->user);
    free(r->password);
    r->host = u.host;
    r->port = u.port;
    r->user = u.user;
    r->password = u.password;
    r->db = u.db;
}

static void on_redis_on_error(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    static const struct enum_name names[] = {{"fail_open", LP_REDIS_FAIL_OPEN},
                                             {"fail_closed", LP_REDIS_FAIL_CLOSED}};
    int v;
    if (enum_value(w, val, names, 2, "unknown value", "fail_open or fail_closed", &v))
        *(enum lp_redis_on_error *)target = (enum lp_redis_on_error)v;
}

static const struct field redis_fields[] = {
    FN("url", on_redis_url),
    VAL("key_prefix", K_STR, struct lp_redis_cfg, key_prefix),
    NUM("timeout", K_DUR, struct lp_redis_cfg, timeout_ms, 1, 60000),
    FNAT("on_error", struct lp_redis_cfg, on_error, on_redis_on_error),
    END,
};

/* redis: present means shared state; a URL is required. */
static void on_redis(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    struct lp_config *cfg = target;
    cfg->redis.present = true;
    walk_map(w, val, redis_fields, &cfg->redis);
    if (!cfg->redis.url && val->type == YAML_MAPPING_NODE)
        ERR(w, val, "redis.url: missing (redis://[user:password@]host:port/db)");
}

static void on_tracing_headers(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    struct lp_tracing_cfg *t = target;
    kv_map(w, val, &t->otlp_headers, &t->n_otlp_headers, true);
}

static void on_tracing_ratio(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    double *r = target, v;
    if (!get_float(w, val, &v))
        return;
    if (!(v >= 0 && v <= 1))
        ERR(w, val, "sample_ratio must be between 0 and 1");
    else
        *r = v;
}

static bool otlp_protocol_parse(const char *s, enum lp_otlp_protocol *p)
{
    if (strcmp(s, "http/json") == 0)
        *p = LP_OTLP_HTTP_JSON;
    else if (strcmp(s, "http/protobuf") == 0)
        *p = LP_OTLP_HTTP_PROTOBUF;
    else
        return false;
    return true;
}

static void on_tracing_protocol(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    struct lp_tracing_cfg *t = target;
    char *s;
    if (scalar(w, val, "http/json or http/protobuf", &s) != SC_OK)
        return;
    if (otlp_protocol_parse(s, &t->protocol))
        t->protocol_set = true;
    else
        ERR(w, val, "unsupported otlp_protocol \"%.40s\" (supported: http/json, http/protobuf; "
                    "not grpc)", s);
    free(s);
}

static const struct field tracing_fields[] = {
    VAL("enabled", K_BOOL, struct lp_tracing_cfg, enabled),
    VAL("otlp_endpoint", K_STR, struct lp_tracing_cfg, otlp_endpoint),
    FN("otlp_headers", on_tracing_headers),
    FN("otlp_protocol", on_tracing_protocol),
    FNAT("sample_ratio", struct lp_tracing_cfg, sample_ratio, on_tracing_ratio),
    VAL("service_name", K_STR, struct lp_tracing_cfg, service_name),
    END,
};

/* tracing: the OTEL_* environment variables are defaults for what the block leaves out. */
static void on_tracing(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    struct lp_config *cfg = target;
    struct lp_tracing_cfg *t = &cfg->tracing;
    walk_map(w, val, tracing_fields, t);
    if (val->type != YAML_MAPPING_NODE || w->stop)
        return;
    const char *env;
    if (!t->otlp_endpoint && (env = getenv("OTEL_EXPORTER_OTLP_ENDPOINT")) && env[0])
        t->otlp_endpoint = lp_xstrdup(env);
    if (!t->n_otlp_headers && (env = getenv("OTEL_EXPORTER_OTLP_HEADERS")) && env[0]) {
        const char *why = NULL;
        if (!lp_config_parse_otlp_headers(env, &t->otlp_headers, &t->n_otlp_headers, &why))
            ERR(w, val, "OTEL_EXPORTER_OTLP_HEADERS: %s (expected name=value,name2=value2)", why);
    }
    if (!t->service_name && (env = getenv("OTEL_SERVICE_NAME")) && env[0])
        t->service_name = lp_xstrdup(env);
    if (!t->protocol_set && (((env = getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")) && env[0]) ||
                             ((env = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")) && env[0])) &&
        !otlp_protocol_parse(env, &t->protocol))
        ERR(w, val, "OTEL_EXPORTER_OTLP_PROTOCOL=%.40s is not supported (http/json, "
                    "http/protobuf; not grpc)", env);
    if (!t->enabled)
        return;
    const char *e = t->otlp_endpoint;
    if (!e || !e[0])
        ERR(w, val, "tracing.otlp_endpoint: missing (or set OTEL_EXPORTER_OTLP_ENDPOINT), e.g. "
                    "http://127.0.0.1:4318");
    else if ((strncmp(e, "http://", 7) != 0 && strncmp(e, "https://", 8) != 0) ||
             strpbrk(e, " \t\r\n") || strlen(e) > 1024)
        ERR(w, val, "tracing.otlp_endpoint: \"%.80s\" is not an http:// or https:// URL", e);
}

static const struct field metrics_fields[] = {
    VAL("enabled", K_BOOL, struct lp_metrics_cfg, enabled),
    END,
};
/* clang-format on */

/* ---- traffic control: rate_limit, concurrency, keys, trusted proxies ---------------------- */

/* A number within [lo, hi] (the reference's validation ranges). */
static bool float_in(struct lp_config_walk *w, yaml_node_t *val, double lo, double hi, double *out)
{
    double v;
    if (!get_float(w, val, &v))
        return false;
    if (!(v >= lo && v <= hi)) {
        ERR(w, val, "%g is out of range [%g, %g]", v, lo, hi);
        return false;
    }
    *out = v;
    return true;
}

static void on_global_rps(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    float_in(w, val, 1, 10000, target);
}

static void on_per_ip_rps(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    float_in(w, val, 0, 1000, target);
}

static void on_burst_factor(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    float_in(w, val, 1, 3, target);
}

static void on_per_model_rps(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    struct lp_rate_limit_cfg *rl = target;
    if (is_null_node(val))
        return;
    if (val->type != YAML_MAPPING_NODE) {
        ERR(w, val, "expected a mapping of alias -> requests per second, got %s", kind_name(val));
        return;
    }
    struct pairs ps;
    collect_pairs(w, val, &ps);
    for (size_t i = 0; i < ps.n && !w->stop; i++) {
        if (ps.v[i].drop)
            continue;
        size_t mark = path_name(w, ps.v[i].k);
        double rps;
        if (float_in(w, ps.v[i].val, 0.1, 5000, &rps)) {
            if (!lp_config_find_alias(w->cfg, ps.v[i].k, strlen(ps.v[i].k)))
                WARN(w, ps.v[i].key, "per_model_rps names unknown alias \"%.64s\"", ps.v[i].k);
            rl->per_model =
                lp_xrealloc(rl->per_model, (rl->n_per_model + 1) * sizeof *rl->per_model);
            rl->per_model[rl->n_per_model++] = (struct lp_model_rps){lp_xstrdup(ps.v[i].k), rps};
        }
        path_pop(w, mark);
    }
    free(ps.v);
}

/* clang-format off */
static const struct field rate_limit_fields[] = {
    VAL("enabled", K_BOOL, struct lp_rate_limit_cfg, enabled),
    FNAT("global_rps", struct lp_rate_limit_cfg, global_rps, on_global_rps),
    FNAT("per_ip_rps", struct lp_rate_limit_cfg, per_ip_rps, on_per_ip_rps),
    FNAT("burst_factor", struct lp_rate_limit_cfg, burst_factor, on_burst_factor),
    FN("per_model_rps", on_per_model_rps),
    END,
};
/* clang-format on */

static void on_queue_timeout(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    int64_t ms = 0;
    if (!get_duration(w, val, &ms))
        return;
    if (ms < 1000 || ms > 300000) {
        ERR(w, val, "queue_timeout must be between 1s and 5m");
        return;
    }
    *(int64_t *)target = ms;
}

/* concurrency.scope. Read after the redis block (concurrency is walked in a later pass), so a
 * cluster scope without Redis is refused here, at the value. */
static void on_conc_scope(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    static const struct enum_name names[] = {{"instance", LP_CONC_INSTANCE},
                                             {"cluster", LP_CONC_CLUSTER}};
    int v;
    if (!enum_value(w, val, names, 2, "unknown value", "instance or cluster", &v))
        return;
    *(enum lp_conc_scope *)target = (enum lp_conc_scope)v;
    if (v == LP_CONC_CLUSTER && !w->cfg->redis.present)
        ERR(w, val, "cluster needs a redis block (the slots are leased in Redis)");
}

/* clang-format off */
static const struct field concurrency_fields[] = {
    VAL("enabled", K_BOOL, struct lp_concurrency_cfg, enabled),
    NUM("max_requests", K_INT, struct lp_concurrency_cfg, max_requests, 1, 10000),
    NUM("max_queue_size", K_INT, struct lp_concurrency_cfg, max_queue_size, 0, 100000),
    FNAT("queue_timeout", struct lp_concurrency_cfg, queue_timeout_ms, on_queue_timeout),
    NUM("per_backend_limit", K_INT, struct lp_concurrency_cfg, per_backend_limit, 1, 1000),
    FNAT("scope", struct lp_concurrency_cfg, scope, on_conc_scope),
    NUM("lease_ttl", K_DUR, struct lp_concurrency_cfg, lease_ttl_ms, 1000, 300000),
    END,
};
/* clang-format on */

static void on_key_models(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    struct lp_client_key *k = target;
    if (val->type == YAML_SCALAR_NODE && !is_null_node(val)) {
        char *s;
        if (scalar(w, val, "an alias name", &s) == SC_OK)
            push_str(&k->models, &k->n_models, s);
    } else {
        str_list(w, val, &k->models, &k->n_models);
    }
    for (size_t i = 0; i < k->n_models; i++) {
        const char *m = k->models[i];
        if (!strpbrk(m, "*?[") && !lp_config_find_alias(w->cfg, m, strlen(m)))
            WARN(w, val, "models names unknown alias \"%.64s\"", m);
    }
}

/* clang-format off */
static const struct field budget_fields[] = {
    NUM("tokens_per_day", K_INT64, struct lp_client_key, tokens_per_day, 0, INT64_MAX / 4),
    NUM("tokens_per_month", K_INT64, struct lp_client_key, tokens_per_month, 0, INT64_MAX / 4),
    END,
};
/* clang-format on */

/* clang-format off */
static const struct field key_fields[] = {
    VAL("name", K_STR, struct lp_client_key, name),
    VAL("key", K_STR, struct lp_client_key, key),
    FN("models", on_key_models),
    NUM("rpm", K_INT64, struct lp_client_key, rpm, 0, 100000000),
    NUM("tpm", K_INT64, struct lp_client_key, tpm, 0, INT64_MAX / 4),
    NUM("max_concurrent", K_INT, struct lp_client_key, max_concurrent, 0, 100000),
    MAP("budget", budget_fields),
    END,
};
/* clang-format on */

void lp_config_free_key(struct lp_client_key *k)
{
    LP_FREE(&k->name);
    if (k->key)
        memset(k->key, 0, strlen(k->key));
    LP_FREE(&k->key);
    for (size_t i = 0; i < k->n_models; i++)
        free(k->models[i]);
    LP_FREE(&k->models);
    k->n_models = 0;
}

static void on_key_item(struct lp_config_walk *w, yaml_node_t *item, size_t i, void *arg)
{
    struct lp_config *cfg = w->cfg;
    if (item->type != YAML_MAPPING_NODE) {
        ERR(w, item, "expected a mapping (a client key), got %s", kind_name(item));
        return;
    }
    struct lp_client_key k = {.line = line_of(item), .col = col_of(item)};
    walk_map(w, item, key_fields, &k);
    if (w->stop) {
        lp_config_free_key(&k);
        return;
    }
    require(w, item, "name", k.name);
    require(w, item, "key", k.key);
    bool ok = k.name && k.key;
    if (ok && (!k.name[0] || !k.key[0])) {
        ERR(w, item, "a client key needs a non-empty name and key");
        ok = false;
    }
    for (size_t j = 0; ok && j < cfg->n_keys; j++) {
        if (strcmp(cfg->keys[j].name, k.name) == 0) {
            ERR(w, item, "duplicate key name \"%.64s\" (first defined at line %d)", k.name,
                cfg->keys[j].line);
            ok = false;
        } else if (strcmp(cfg->keys[j].key, k.key) == 0) {
            ERR(w, item, "key \"%.64s\" has the same secret as \"%.64s\"", k.name,
                cfg->keys[j].name);
            ok = false;
        }
    }
    if (ok && cfg->proxy_api_key && strcmp(cfg->proxy_api_key, k.key) == 0) {
        ERR(w, item, "key \"%.64s\" has the same secret as proxy_api_key", k.name);
        ok = false;
    }
    if (!ok) {
        lp_config_free_key(&k);
        return;
    }
    cfg->keys[cfg->n_keys++] = k;
}

static void on_keys(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    struct lp_config *cfg = w->cfg;
    if (is_null_node(val))
        return;
    if (val->type != YAML_SEQUENCE_NODE) {
        ERR(w, val, "expected a list of client keys, got %s", kind_name(val));
        return;
    }
    size_t n = (size_t)(val->data.sequence.items.top - val->data.sequence.items.start);
    cfg->keys = lp_xcalloc(n ? n : 1, sizeof *cfg->keys);
    walk_list(w, val, "a list of client keys", on_key_item, NULL);
}

static void on_trusted_proxy_item(struct lp_config_walk *w, yaml_node_t *item, size_t i, void *arg)
{
    struct lp_server_cfg *sv = arg;
    char *s;
    if (scalar(w, item, "an address or CIDR block", &s) != SC_OK)
        return;
    struct lp_cidr c;
    if (!lp_cidr_parse(s, &c))
        ERR(w, item, "\"%.64s\" is not an IP address or CIDR block (e.g. 10.0.0.0/8, ::1)", s);
    else {
        sv->trusted_proxies =
            lp_xrealloc(sv->trusted_proxies, (sv->n_trusted_proxies + 1) * sizeof(struct lp_cidr));
        sv->trusted_proxies[sv->n_trusted_proxies++] = c;
    }
    free(s);
}

static void on_trusted_proxies(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    if (val->type == YAML_SCALAR_NODE && !is_null_node(val))
        on_trusted_proxy_item(w, val, 0, target);
    else
        walk_list(w, val, "a list of CIDR blocks", on_trusted_proxy_item, target);
}

static void on_listen(struct lp_config_walk *w, yaml_node_t *val, void *target)
{
    char **slot = target, *s;
    int port;
    if (typed_scalar(w, val, "a listen address", &s) != SC_OK)
        return; /* absent or empty: the default ":8765" stays (the reference's Validate bug) */
    if (!lp_listen_parse(s, NULL, 0, &port)) {
        ERR(w, val, "invalid listen address \"%.64s\" (expected :port, host:port or [v6]:port)", s);
        free(s);
        return;
    }
    free(*slot);
    *slot = s;
}

/* clang-format off */
static const struct field root_fields[] = {
    FN("backends", on_backends, .pass = 0),
    FN("models", on_models, .pass = 1),
    FNAT("listen", struct lp_config, listen, on_listen, .pass = 2),
    VAL("proxy_api_key", K_STR, struct lp_config, proxy_api_key, .pass = 2),
    VAL("admin_api_key", K_STR, struct lp_config, admin_api_key, .pass = 2),
    MAPAT("proxy", struct lp_config, proxy, proxy_fields, .pass = 2),
    MAPAT("fallback", struct lp_config, fallback, fallback_fields, .pass = 2),
    FNAT("error_fallback", struct lp_config, error_fallback, on_error_fallback, .pass = 2),
    MAPAT("detection", struct lp_config, detection, detection_fields, .pass = 2),
    MAPAT("timeout", struct lp_config, timeout, timeout_fields, .pass = 2),
    FNAT("server", struct lp_config, server, on_server, .pass = 2),
    MAPAT("logging", struct lp_config, logging, logging_fields, .pass = 2),
    MAPAT("metrics", struct lp_config, metrics, metrics_fields, .pass = 2),
    FN("tracing", on_tracing, .pass = 2),
    FN("passthrough_paths", on_passthrough_paths, .pass = 2),
    FN("redis", on_redis, .pass = 2),
    MAPAT("rate_limit", struct lp_config, rate_limit, rate_limit_fields, .pass = 2),
    MAPAT("concurrency", struct lp_config, concurrency, concurrency_fields, .pass = 3),
    FNAT("routing", struct lp_config, routing, on_routing, .pass = 2),
    MAPAT("translation", struct lp_config, translation, translation_fields, .pass = 2),
    FN("keys", on_keys, .pass = 3),
    END,
};
/* clang-format on */

void lp_config_walk_root(struct lp_config_walk *w)
{
    yaml_node_t *root = yaml_document_get_root_node(w->doc);
    if (!root)
        return;
    w->root_line = line_of(root);
    w->root_col = col_of(root);
    if (is_null_node(root)) { /* "---" alone, or only comments after it */
        lp_config_diag_raw(w, LP_DIAG_ERROR, 0, 0,
                           "empty configuration; at least one backend is required");
        return;
    }
    if (root->type != YAML_MAPPING_NODE) {
        ERR(w, root, "the top level must be a mapping, got %s", kind_name(root));
        return;
    }
    walk_map(w, root, root_fields, w->cfg);
    if (!w->saw_backends && !w->stop)
        lp_config_diag_raw(w, LP_DIAG_ERROR, w->root_line, w->root_col,
                           "backends: missing; at least one backend is required");
}

void lp_config_free_backend(struct lp_backend *b)
{
    free_backend(b);
}
