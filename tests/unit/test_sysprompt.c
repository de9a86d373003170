/* test_sysprompt.c - system-prompt files, front matter, variables, order and injection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "sysprompt.h"
#include "util/json.h"

static void parse(const char *text, struct lp_sysprompt *p, bool want_enabled)
{
    char *w = NULL;
    bool en = lp_sysprompt_parse("t.md", text, strlen(text), NULL, 0, 0, p, &w);
    assert_int_equal(en, want_enabled);
    free(w);
}

static void free_prompt(struct lp_sysprompt *p)
{
    struct lp_sysprompts *s = calloc(1, sizeof *s);
    s->items = malloc(sizeof *p);
    s->items[0] = *p;
    s->n = 1;
    lp_sysprompt_free_set(s);
}

static void test_front_matter(void **st)
{
    (void)st;
    struct lp_sysprompt p;
    parse("---\nposition: after\nseparator: custom\ncustom_separator: ' | '\n"
          "models: [\"claude-*\", gpt-4o]\npriority: 5\n---\n\n  Hello  \n",
          &p, true);
    assert_string_equal(p.text, "Hello");
    assert_true(p.after);
    assert_string_equal(p.separator, " | ");
    assert_int_equal(p.n_models, 2);
    assert_string_equal(p.models[0], "claude-*");
    assert_string_equal(p.models[1], "gpt-4o");
    assert_int_equal(p.priority, 5);
    free_prompt(&p);

    parse("position: before\nseparator: newline\n---\nLegacy body", &p, true); /* legacy form */
    assert_string_equal(p.text, "Legacy body");
    assert_string_equal(p.separator, "\n");
    assert_false(p.after);
    free_prompt(&p);

    parse("No front matter at all.", &p, true);
    assert_string_equal(p.text, "No front matter at all.");
    assert_string_equal(p.separator, "\n\n");
    assert_int_equal(p.priority, 100);
    assert_string_equal(p.models[0], "*");
    free_prompt(&p);

    /* A Markdown rule is not front matter: the whole file is content. */
    parse("Intro text\n---\nMore text", &p, true);
    assert_string_equal(p.text, "Intro text\n---\nMore text");
    free_prompt(&p);

    parse("---\nenabled: false\n---\nHidden", &p, false);
    free_prompt(&p);

    parse("---\nseparator: none\n---\nX", &p, true);
    assert_string_equal(p.separator, "");
    free_prompt(&p);
}

static void test_bad_yaml_is_content(void **st)
{
    (void)st;
    struct lp_sysprompt p;
    char *w = NULL;
    const char *t = "---\n: [unclosed\n---\nBody";
    assert_true(lp_sysprompt_parse("bad.md", t, strlen(t), NULL, 0, 0, &p, &w));
    assert_string_equal(p.text, t);
    assert_non_null(w);
    assert_non_null(strstr(w, "bad.md: front matter"));
    free(w);
    free_prompt(&p);
}

static void test_variables(void **st)
{
    (void)st;
    setenv("TZ", "UTC", 1);
    tzset();
    setenv("LP_TEST_VAR", "envval", 1);
    unsetenv("LP_TEST_MISSING");
    setenv("SHELL", "/usr/bin/zsh", 1);
    struct lp_kv vars[] = {{"_OS", "plan9"}, {"TEAM", "core"}};
    const char *t = "os=${_OS} team=${TEAM} env=${LP_TEST_VAR} miss=[${LP_TEST_MISSING}] "
                    "dflt=${LP_TEST_MISSING:-fallback} set=${LP_TEST_VAR:-x} date=${_DATE} "
                    "time=${_TIME} dt=${_DATETIME} sh=${_SHELL} lit=$5 ${ } ${1X} ${open";
    struct lp_sysprompt p;
    assert_true(lp_sysprompt_parse("v.md", t, strlen(t), vars, 2, 86400 + 3661, &p, NULL));
    assert_string_equal(p.text, "os=plan9 team=core env=envval miss=[] dflt=fallback set=envval "
                                "date=1970-01-02 time=01:01:01 dt=1970-01-02T01:01:01 sh=zsh "
                                "lit=$5 ${ } ${1X} ${open");
    free_prompt(&p);
    /* Substituted values are not expanded again. */
    struct lp_kv rec[] = {{"A", "${B}"}, {"B", "no"}};
    assert_true(lp_sysprompt_parse("v.md", "${A}", 4, rec, 2, 0, &p, NULL));
    assert_string_equal(p.text, "${B}");
    free_prompt(&p);
}

static char tmpdir[64];

static void write_file(const char *rel, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, rel);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup_dir(void **st)
{
    (void)st;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/lp_sysprompt_XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    char sub[128];
    snprintf(sub, sizeof sub, "%s/system_prompts", tmpdir);
    mkdir(sub, 0700);
    write_file("system_prompt.md", "Main prompt"); /* prio 100 */
    write_file("system_prompts/b.md", "---\npriority: 10\n---\nB first");
    write_file("system_prompts/a.md", "---\npriority: 50\n---\nA second");
    write_file("system_prompts/c.md",
               "---\npriority: 50\nposition: after\nseparator: newline\n---\nC after");
    write_file("system_prompts/d.md", "---\nenabled: false\n---\nD disabled");
    write_file("system_prompts/e.md", "---\nmodels: [\"gpt-*\"]\n---\nE gpt only");
    write_file("system_prompts/notes.txt", "ignored");
    return 0;
}

static int teardown_dir(void **st)
{
    (void)st;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static struct lp_sysprompts *load(void)
{
    struct lp_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.dir = tmpdir;
    cfg.proxy.enable_system_prompt = true;
    char *w = NULL;
    struct lp_sysprompts *sp = lp_sysprompt_load(&cfg, &w);
    assert_null(w);
    return sp;
}

static void test_load_order(void **st)
{
    (void)st;
    struct lp_sysprompts *sp = load();
    assert_int_equal(sp->n, 5);
    assert_string_equal(sp->items[0].text, "B first");
    assert_string_equal(sp->items[1].text, "A second"); /* same priority as c.md: by path */
    assert_string_equal(sp->items[2].text, "C after");
    assert_string_equal(sp->items[3].text, "Main prompt");
    assert_string_equal(sp->items[4].text, "E gpt only");
    lp_sysprompt_free_set(sp);

    struct lp_config off;
    memset(&off, 0, sizeof off);
    off.dir = tmpdir;
    sp = lp_sysprompt_load(&off, NULL);
    assert_int_equal(sp->n, 0);
    assert_null(lp_sysprompt_apply(sp, LP_PROTO_OPENAI, "x", "{}", 2, NULL));
    lp_sysprompt_free_set(sp);
}

static void expect_apply(struct lp_sysprompts *sp, enum lp_proto p, const char *alias,
                         const char *body, const char *want)
{
    size_t n = 0;
    char *got = lp_sysprompt_apply(sp, p, alias, body, strlen(body), &n);
    if (!want) {
        assert_null(got);
        return;
    }
    assert_non_null(got);
    assert_int_equal(n, strlen(got));
    struct json_object *g = lp_json_parse(got, n, NULL),
                       *w = lp_json_parse(want, strlen(want), NULL);
    assert_non_null(w);
    if (!json_object_equal(g, w))
        fail_msg("got  %s\nwant %s", got, want);
    json_object_put(g);
    json_object_put(w);
    free(got);
}

static void test_apply_openai(void **st)
{
    (void)st;
    struct lp_sysprompts *sp = load();
    /* Existing string system message: befores in priority order, after appended; the other
     * system/developer messages stay. */
    expect_apply(
        sp, LP_PROTO_OPENAI, "claude-x",
        "{\"messages\":[{\"role\":\"system\",\"content\":\"Orig\"},"
        "{\"role\":\"developer\",\"content\":\"Dev\"},{\"role\":\"user\",\"content\":\"hi\"},"
        "{\"role\":\"system\",\"content\":\"Late\"}]}",
        "{\"messages\":[{\"role\":\"system\",\"content\":"
        "\"B first\\n\\nA second\\n\\nMain prompt\\n\\nOrig\\nC after\"},"
        "{\"role\":\"developer\",\"content\":\"Dev\"},{\"role\":\"user\",\"content\":\"hi\"},"
        "{\"role\":\"system\",\"content\":\"Late\"}]}");
    /* No system message: one is inserted at index 0; gpt-only prompt matches. */
    expect_apply(sp, LP_PROTO_OPENAI, "gpt-4o",
                 "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                 "{\"messages\":[{\"role\":\"system\",\"content\":"
                 "\"B first\\n\\nA second\\n\\nMain prompt\\n\\nE gpt only\\nC after\"},"
                 "{\"role\":\"user\",\"content\":\"hi\"}]}");
    /* Array content keeps its parts; prompts become parts around them. */
    expect_apply(
        sp, LP_PROTO_OPENAI, "m",
        "{\"messages\":[{\"role\":\"system\",\"content\":[{\"type\":\"text\",\"text\":\"P\"}]}]}",
        "{\"messages\":[{\"role\":\"system\",\"content\":[{\"type\":\"text\",\"text\":\"B first\"},"
        "{\"type\":\"text\",\"text\":\"A second\"},{\"type\":\"text\",\"text\":\"Main prompt\"},"
        "{\"type\":\"text\",\"text\":\"P\"},{\"type\":\"text\",\"text\":\"C after\"}]}]}");
    expect_apply(sp, LP_PROTO_OPENAI, "m", "[1,2]", NULL);
    expect_apply(sp, LP_PROTO_OPENAI, "m", "{bad", NULL);
    lp_sysprompt_free_set(sp);
}

static void test_apply_anthropic(void **st)
{
    (void)st;
    struct lp_sysprompts *sp = load();
    expect_apply(sp, LP_PROTO_ANTHROPIC, "claude",
                 "{\"system\":\"S\",\"messages\":[{\"role\":\"system\",\"content\":\"mid\"}]}",
                 "{\"system\":\"B first\\n\\nA second\\n\\nMain prompt\\n\\nS\\nC after\","
                 "\"messages\":[{\"role\":\"system\",\"content\":\"mid\"}]}");
    expect_apply(sp, LP_PROTO_ANTHROPIC, "claude",
                 "{\"system\":[{\"type\":\"text\",\"text\":\"S\",\"cache_control\":{\"type\":"
                 "\"ephemeral\"}}]}",
                 "{\"system\":[{\"type\":\"text\",\"text\":\"B "
                 "first\"},{\"type\":\"text\",\"text\":\"A second\"},"
                 "{\"type\":\"text\",\"text\":\"Main prompt\"},"
                 "{\"type\":\"text\",\"text\":\"S\",\"cache_control\":{\"type\":\"ephemeral\"}},"
                 "{\"type\":\"text\",\"text\":\"C after\"}]}");
    expect_apply(
        sp, LP_PROTO_ANTHROPIC, "claude", "{\"messages\":[]}",
        "{\"messages\":[],\"system\":\"B first\\n\\nA second\\n\\nMain prompt\\nC after\"}");
    lp_sysprompt_free_set(sp);
}

/* The injection re-serialises the body: integers beyond 64 bits stay byte-exact. */
static void test_apply_keeps_big_ints(void **st)
{
    (void)st;
    struct lp_sysprompts *sp = load();
    const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                       "\"metadata\":{\"n\":123456789012345678901234567890,"
                       "\"m\":-123456789012345678901234567890}}";
    size_t n = 0;
    char *got = lp_sysprompt_apply(sp, LP_PROTO_OPENAI, "m", body, strlen(body), &n);
    assert_non_null(got);
    if (!strstr(got,
                "{\"n\":123456789012345678901234567890,\"m\":-123456789012345678901234567890}"))
        fail_msg("digits lost: %s", got);
    free(got);
    got = lp_sysprompt_apply(sp, LP_PROTO_ANTHROPIC, "m", body, strlen(body), &n);
    assert_non_null(got);
    assert_non_null(strstr(got, "123456789012345678901234567890"));
    free(got);
    lp_sysprompt_free_set(sp);
}

static void test_model_filter(void **st)
{
    (void)st;
    struct lp_sysprompt p;
    parse("---\nmodels: [\"team/*\"]\n---\nOnly team", &p, true);
    struct lp_sysprompts *sp = calloc(1, sizeof *sp);
    sp->items = malloc(sizeof p);
    sp->items[0] = p;
    sp->n = 1;
    expect_apply(sp, LP_PROTO_ANTHROPIC, "other", "{\"system\":\"S\"}", NULL);
    expect_apply(sp, LP_PROTO_ANTHROPIC, "team/claude", "{\"system\":\"S\"}",
                 "{\"system\":\"Only team\\n\\nS\"}");
    lp_sysprompt_free_set(sp);
    assert_null(lp_sysprompt_apply(NULL, LP_PROTO_OPENAI, "x", "{}", 2, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_front_matter),
        cmocka_unit_test(test_bad_yaml_is_content),
        cmocka_unit_test(test_variables),
        cmocka_unit_test(test_load_order),
        cmocka_unit_test(test_apply_openai),
        cmocka_unit_test(test_apply_anthropic),
        cmocka_unit_test(test_apply_keeps_big_ints),
        cmocka_unit_test(test_model_filter),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
