/* sysprompt.c - loading (files, front matter, variables) and applying system prompts. */
#include "sysprompt.h"

#include <ctype.h>
#include <stdarg.h>
#include <dirent.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <yaml.h>

#include "util/alloc.h"
#include "util/buf.h"
#include "util/json.h"

#define MAX_FILE_BYTES (1024 * 1024) /* a prompt file larger than this is skipped */
#define MAX_FILES 256                /* files read from system_prompts/ */
#define DEFAULT_PRIORITY 100

static void warn(char **warnings, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void warn(char **warnings, const char *path, const char *fmt, ...)
{
    if (!warnings)
        return;
    struct lp_buf b;
    lp_buf_init(&b, 0);
    lp_buf_printf(&b, "%s%s: ", *warnings ? *warnings : "", path);
    va_list ap;
    va_start(ap, fmt);
    lp_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    lp_buf_appendc(&b, '\n');
    free(*warnings);
    *warnings = lp_buf_steal(&b, NULL);
}

/* ---- variables ---- */

struct vars {
    const struct lp_kv *custom;
    size_t n_custom;
    time_t now;
};

static const char *go_arch(const char *m)
{
    if (!strcmp(m, "x86_64"))
        return "amd64";
    if (!strcmp(m, "aarch64"))
        return "arm64";
    if (!strcmp(m, "i686") || !strcmp(m, "i386"))
        return "386";
    return m;
}

static const char *env2(const char *a, const char *b)
{
    const char *v = getenv(a);
    return v && *v ? v : (getenv(b) ? getenv(b) : "");
}

/* Value of a built-in ${_NAME} into buf, or NULL when `name` is not a built-in. */
static const char *builtin(const char *name, time_t now, char *buf, size_t cap)
{
    struct utsname u;
    struct tm tm;
    localtime_r(&now, &tm);
    if (!strcmp(name, "_OS") || !strcmp(name, "_ARCH")) {
        if (uname(&u) != 0)
            return "";
        snprintf(buf, cap, "%s", !strcmp(name, "_OS") ? u.sysname : go_arch(u.machine));
        for (char *p = buf; !strcmp(name, "_OS") && *p; p++)
            *p = (char)tolower((unsigned char)*p);
        return buf;
    }
    if (!strcmp(name, "_HOSTNAME"))
        return gethostname(buf, cap) == 0 ? (buf[cap - 1] = '\0', buf) : "";
    if (!strcmp(name, "_USER"))
        return env2("USER", "USERNAME");
    if (!strcmp(name, "_HOME"))
        return getenv("HOME") ? getenv("HOME") : "";
    if (!strcmp(name, "_SHELL")) {
        const char *s = getenv("SHELL") ? getenv("SHELL") : "";
        return strrchr(s, '/') ? strrchr(s, '/') + 1 : s;
    }
    if (!strcmp(name, "_LANG"))
        return env2("LANG", "LANGUAGE");
    if (!strcmp(name, "_DATE"))
        strftime(buf, cap, "%Y-%m-%d", &tm);
    else if (!strcmp(name, "_TIME"))
        strftime(buf, cap, "%H:%M:%S", &tm);
    else if (!strcmp(name, "_DATETIME"))
        strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    else
        return NULL;
    return buf;
}

/* custom_variables, then built-ins, then the environment; NULL when unset. */
static const char *lookup(const struct vars *v, const char *name, char *buf, size_t cap)
{
    for (size_t i = 0; i < v->n_custom; i++)
        if (v->custom[i].key && !strcmp(v->custom[i].key, name))
            return v->custom[i].value ? v->custom[i].value : "";
    const char *b = builtin(name, v->now, buf, cap);
    if (b)
        return b;
    return getenv(name);
}

/* One pass of ${NAME} / ${NAME:-default}; substituted values are not expanded again. Anything
 * that is not a well-formed reference is kept literally. */
static char *expand(const char *s, const struct vars *v)
{
    struct lp_buf b;
    lp_buf_init(&b, 0);
    while (*s) {
        const char *end = NULL;
        size_t nlen = 0;
        if (s[0] == '$' && s[1] == '{' && (isalpha((unsigned char)s[2]) || s[2] == '_')) {
            nlen = strspn(s + 2, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_");
            end = strchr(s + 2 + nlen, '}');
            if (end && end != s + 2 + nlen && strncmp(s + 2 + nlen, ":-", 2) != 0)
                end = NULL;
        }
        if (!end) {
            lp_buf_appendc(&b, *s++);
            continue;
        }
        char name[128], val[256];
        snprintf(name, sizeof name, "%.*s", (int)nlen, s + 2);
        const char *r = lookup(v, name, val, sizeof val);
        if ((!r || !*r) && end != s + 2 + nlen)
            lp_buf_append(&b, s + 4 + nlen, (size_t)(end - (s + 4 + nlen)));
        else if (r)
            lp_buf_appends(&b, r);
        s = end + 1;
    }
    return lp_buf_steal(&b, NULL);
}

/* ---- front matter ---- */

struct meta {
    bool after, enabled, known_only;
    char *separator, *custom_sep;
    char **models;
    size_t n_models;
    int priority;
};

static const char *scalar(yaml_document_t *d, yaml_node_t *n)
{
    (void)d;
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static void add_model(struct meta *m, const char *g)
{
    m->models = lp_xrealloc(m->models, (m->n_models + 1) * sizeof *m->models);
    m->models[m->n_models++] = lp_xstrdup(g);
}

static void set_field(yaml_document_t *d, const char *k, yaml_node_t *vn, struct meta *m,
                      const char *path, char **warnings)
{
    const char *v = scalar(d, vn);
    if (!strcmp(k, "position") && v) {
        m->after = !strcmp(v, "after");
        if (strcmp(v, "after") && strcmp(v, "before"))
            warn(warnings, path, "position \"%s\" is not before|after; using before", v);
    } else if (!strcmp(k, "separator") && v) {
        free(m->separator);
        m->separator = lp_xstrdup(v);
    } else if (!strcmp(k, "custom_separator") && v) {
        free(m->custom_sep);
        m->custom_sep = lp_xstrdup(v);
    } else if (!strcmp(k, "priority") && v) {
        m->priority = (int)strtol(v, NULL, 10); /* a non-number is priority 0, as before */
    } else if (!strcmp(k, "enabled") && v) {
        m->enabled = !(!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off"));
    } else if (!strcmp(k, "models") && v) {
        add_model(m, v);
    } else if (!strcmp(k, "models") && vn && vn->type == YAML_SEQUENCE_NODE) {
        for (yaml_node_item_t *it = vn->data.sequence.items.start; it < vn->data.sequence.items.top;
             it++)
            if (scalar(d, yaml_document_get_node(d, *it)))
                add_model(m, scalar(d, yaml_document_get_node(d, *it)));
    } else {
        m->known_only = false;
        warn(warnings, path, "unknown front-matter field \"%s\" ignored", k);
    }
}

/* Parse a YAML mapping into *m. false when it is not YAML or not a mapping. */
static bool parse_meta(const char *y, size_t n, struct meta *m, const char *path, char **warnings)
{
    yaml_parser_t p;
    yaml_document_t d;
    bool ok = false;
    if (!yaml_parser_initialize(&p))
        return false;
    yaml_parser_set_input_string(&p, (const unsigned char *)y, n);
    if (!yaml_parser_load(&p, &d)) {
        yaml_parser_delete(&p);
        return false;
    }
    yaml_node_t *root = yaml_document_get_root_node(&d);
    if (root && root->type == YAML_MAPPING_NODE) {
        ok = true;
        m->known_only = true;
        for (yaml_node_pair_t *pr = root->data.mapping.pairs.start;
             pr < root->data.mapping.pairs.top; pr++) {
            const char *k = scalar(&d, yaml_document_get_node(&d, pr->key));
            if (k)
                set_field(&d, k, yaml_document_get_node(&d, pr->value), m, path, warnings);
        }
    }
    yaml_document_delete(&d);
    yaml_parser_delete(&p);
    return ok;
}

/* Offset of the line "---" at or after `from`, or -1; *next is the offset after that line. */
static long find_rule(const char *t, size_t len, size_t from, size_t *next)
{
    for (size_t i = from; i + 3 <= len; i++) {
        if ((i == from || t[i - 1] == '\n') && !strncmp(t + i, "---", 3)) {
            size_t j = i + 3;
            while (j < len && (t[j] == ' ' || t[j] == '\r'))
                j++;
            if (j == len || t[j] == '\n') {
                *next = j < len ? j + 1 : j;
                return (long)i;
            }
        }
    }
    return -1;
}

/* Split front matter off: "---\n<yaml>\n---\n<content>" or the legacy "<yaml>\n---\n<content>"
 * (accepted only when every key of <yaml> is a known field, so a Markdown rule is safe). */
static size_t split_front_matter(const char *t, size_t len, struct meta *m, const char *path,
                                 char **warnings)
{
    size_t next;
    if (find_rule(t, len, 0, &next) == 0) {
        size_t body;
        long end = find_rule(t, len, next, &body);
        if (end >= 0) {
            if (parse_meta(t + next, (size_t)end - next, m, path, warnings))
                return body;
            warn(warnings, path, "front matter is not a YAML mapping; file used as content");
        }
        return 0;
    }
    long end = find_rule(t, len, 0, &next);
    if (end > 0) {
        struct meta probe = {.enabled = true, .priority = DEFAULT_PRIORITY};
        if (parse_meta(t, (size_t)end, &probe, path, NULL) && probe.known_only) {
            parse_meta(t, (size_t)end, m, path, warnings);
            for (size_t i = 0; i < probe.n_models; i++)
                free(probe.models[i]);
            free(probe.models);
            free(probe.separator);
            free(probe.custom_sep);
            return next;
        }
        for (size_t i = 0; i < probe.n_models; i++)
            free(probe.models[i]);
        free(probe.models);
        free(probe.separator);
        free(probe.custom_sep);
    }
    return 0;
}

static char *separator_of(const struct meta *m, const char *path, char **warnings)
{
    const char *s = m->separator;
    if (!s || !strcmp(s, "double-newline"))
        return lp_xstrdup("\n\n");
    if (!strcmp(s, "newline"))
        return lp_xstrdup("\n");
    if (!strcmp(s, "none"))
        return lp_xstrdup("");
    if (!strcmp(s, "custom"))
        return lp_xstrdup(m->custom_sep ? m->custom_sep : "");
    warn(warnings, path, "separator \"%s\" unknown; using double-newline", s);
    return lp_xstrdup("\n\n");
}

static char *trimmed(const char *s, size_t n)
{
    while (n > 0 && isspace((unsigned char)*s))
        s++, n--;
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    return lp_xstrndup(s, n);
}

bool lp_sysprompt_parse(const char *path, const char *text, size_t len, const struct lp_kv *vars,
                        size_t n_vars, time_t now, struct lp_sysprompt *out, char **warnings)
{
    struct meta m = {.enabled = true, .priority = DEFAULT_PRIORITY};
    size_t body = split_front_matter(text, len, &m, path, warnings);
    char *raw = trimmed(text + body, len - body);
    struct vars v = {vars, n_vars, now};
    memset(out, 0, sizeof *out);
    out->path = lp_xstrdup(path);
    out->text = expand(raw, &v);
    out->after = m.after;
    out->separator = separator_of(&m, path, warnings);
    out->priority = m.priority;
    if (m.n_models == 0)
        add_model(&m, "*");
    out->models = m.models;
    out->n_models = m.n_models;
    free(raw);
    free(m.separator);
    free(m.custom_sep);
    return m.enabled && *out->text;
}

/* ---- loading ---- */

static void free_item(struct lp_sysprompt *p)
{
    for (size_t i = 0; i < p->n_models; i++)
        free(p->models[i]);
    free(p->models);
    free(p->path);
    free(p->text);
    free(p->separator);
}

void lp_sysprompt_free_set(struct lp_sysprompts *sp)
{
    if (!sp)
        return;
    for (size_t i = 0; i < sp->n; i++)
        free_item(&sp->items[i]);
    free(sp->items);
    free(sp);
}

static char *read_file(const char *path, size_t *len, char **warnings)
{
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return NULL;
    if (st.st_size > MAX_FILE_BYTES) {
        warn(warnings, path, "larger than 1 MiB; skipped");
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        warn(warnings, path, "cannot be read; skipped");
        return NULL;
    }
    char *b = lp_xmalloc((size_t)st.st_size + 1);
    *len = fread(b, 1, (size_t)st.st_size, f);
    b[*len] = '\0';
    fclose(f);
    return b;
}

static void load_one(struct lp_sysprompts *sp, const char *path, const struct vars *v,
                     char **warnings)
{
    size_t len;
    char *text = read_file(path, &len, warnings);
    if (!text)
        return;
    struct lp_sysprompt p;
    if (lp_sysprompt_parse(path, text, len, v->custom, v->n_custom, v->now, &p, warnings)) {
        sp->items = lp_xrealloc(sp->items, (sp->n + 1) * sizeof *sp->items);
        sp->items[sp->n++] = p;
    } else {
        free_item(&p);
    }
    free(text);
}

static int cmp_prompt(const void *a, const void *b)
{
    const struct lp_sysprompt *x = a, *y = b;
    if (x->priority != y->priority)
        return x->priority < y->priority ? -1 : 1;
    return strcmp(x->path, y->path);
}

static bool is_md(const char *n)
{
    size_t l = strlen(n);
    return l > 3 && !strcmp(n + l - 3, ".md") && n[0] != '.';
}

struct lp_sysprompts *lp_sysprompt_load_dir(const char *dir, const struct lp_kv *vars,
                                            size_t n_vars, time_t now, char **warnings)
{
    struct lp_sysprompts *sp = lp_xcalloc(1, sizeof *sp);
    struct vars v = {vars, n_vars, now};
    char *path = lp_xasprintf("%s/system_prompt.md", dir);
    load_one(sp, path, &v, warnings);
    free(path);
    char *sub = lp_xasprintf("%s/system_prompts", dir);
    DIR *d = opendir(sub);
    struct dirent *e;
    size_t nfiles = 0;
    while (d && (e = readdir(d)) != NULL && nfiles < MAX_FILES) {
        if (!is_md(e->d_name))
            continue;
        path = lp_xasprintf("%s/%s", sub, e->d_name);
        load_one(sp, path, &v, warnings);
        free(path);
        nfiles++;
    }
    if (d)
        closedir(d);
    free(sub);
    if (sp->n > 1)
        qsort(sp->items, sp->n, sizeof *sp->items, cmp_prompt);
    return sp;
}

struct lp_sysprompts *lp_sysprompt_load(const struct lp_config *cfg, char **warnings)
{
    if (!cfg || !cfg->proxy.enable_system_prompt)
        return lp_xcalloc(1, sizeof(struct lp_sysprompts));
    return lp_sysprompt_load_dir(cfg->dir && *cfg->dir ? cfg->dir : ".",
                                 cfg->proxy.custom_variables, cfg->proxy.n_custom_variables,
                                 time(NULL), warnings);
}

/* ---- applying ---- */

static bool matches(const struct lp_sysprompt *p, const char *alias)
{
    for (size_t i = 0; i < p->n_models; i++)
        if (fnmatch(p->models[i], alias ? alias : "", 0) == 0)
            return true;
    return false;
}

/* Before-prompts, existing text, after-prompts joined by the separators: a before-prompt's
 * separator follows it, an after-prompt's precedes it; nothing is added around empty text. */
static char *join_text(const struct lp_sysprompt **ps, size_t n, const char *existing)
{
    struct lp_buf b;
    lp_buf_init(&b, 0);
    const char *pending = NULL; /* separator owed by the previous before-prompt */
    for (size_t i = 0; i < n; i++) {
        if (ps[i]->after)
            continue;
        if (pending)
            lp_buf_appends(&b, pending);
        lp_buf_appends(&b, ps[i]->text);
        pending = ps[i]->separator;
    }
    if (existing && *existing) {
        if (pending)
            lp_buf_appends(&b, pending);
        lp_buf_appends(&b, existing);
        pending = NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!ps[i]->after)
            continue;
        if (b.len)
            lp_buf_appends(&b, ps[i]->separator);
        lp_buf_appends(&b, ps[i]->text);
    }
    return b.data ? lp_buf_steal(&b, NULL) : lp_xstrdup("");
}

/* Text parts/blocks around an existing array: one per prompt, existing entries untouched. */
static struct json_object *wrap_array(const struct lp_sysprompt **ps, size_t n,
                                      struct json_object *arr)
{
    struct json_object *r = json_object_new_array();
    for (int pass = 0; pass < 3; pass++) {
        if (pass == 1) {
            for (size_t i = 0; i < lp_json_arr_len(arr); i++)
                json_object_array_add(r, json_object_get(lp_json_arr_at(arr, i)));
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            if (ps[i]->after != (pass == 2))
                continue;
            struct json_object *t = json_object_new_object();
            lp_json_set_str(t, "type", "text");
            lp_json_set_str(t, "text", ps[i]->text);
            json_object_array_add(r, t);
        }
    }
    return r;
}

/* New value for a system content that is `cur` (string, array, or absent). */
static struct json_object *inject(const struct lp_sysprompt **ps, size_t n, struct json_object *cur)
{
    if (lp_json_is_arr(cur))
        return wrap_array(ps, n, cur);
    char *s = join_text(ps, n, lp_json_str(cur));
    struct json_object *r = json_object_new_string(s);
    free(s);
    return r;
}

static void apply_openai(const struct lp_sysprompt **ps, size_t n, struct json_object *root)
{
    struct json_object *msgs = lp_json_get_arr(root, "messages");
    for (size_t i = 0; i < lp_json_arr_len(msgs); i++) {
        struct json_object *m = lp_json_arr_at(msgs, i);
        const char *role = lp_json_get_str(m, "role");
        if (role && !strcmp(role, "system")) {
            lp_json_set(m, "content", inject(ps, n, lp_json_get(m, "content")));
            return;
        }
    }
    struct json_object *m = json_object_new_object();
    lp_json_set_str(m, "role", "system");
    lp_json_set(m, "content", inject(ps, n, NULL));
    /* json-c 0.16 has no array insert: rebuild the list with the new message first. */
    struct json_object *r = json_object_new_array();
    json_object_array_add(r, m);
    for (size_t i = 0; i < lp_json_arr_len(msgs); i++)
        json_object_array_add(r, json_object_get(lp_json_arr_at(msgs, i)));
    lp_json_set(root, "messages", r);
}

char *lp_sysprompt_apply(const struct lp_sysprompts *sp, enum lp_proto client, const char *alias,
                         const char *body, size_t len, size_t *out_len)
{
    if (!sp || sp->n == 0 || !body)
        return NULL;
    const struct lp_sysprompt **ps = lp_xcalloc(sp->n, sizeof *ps);
    size_t n = 0;
    char *res = NULL;
    for (size_t i = 0; i < sp->n; i++)
        if (matches(&sp->items[i], alias))
            ps[n++] = &sp->items[i];
    struct json_object *root = n ? lp_json_parse(body, len, NULL) : NULL;
    if (lp_json_is_obj(root)) {
        if (client == LP_PROTO_ANTHROPIC)
            lp_json_set(root, "system", inject(ps, n, lp_json_get(root, "system")));
        else
            apply_openai(ps, n, root);
        size_t l;
        const char *s = lp_json_dump(root, &l);
        res = lp_xstrndup(s, l);
        if (out_len)
            *out_len = l;
    }
    json_object_put(root);
    free(ps);
    return res;
}
