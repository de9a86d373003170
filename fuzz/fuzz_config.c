/* fuzz_config.c - the configuration loader must never crash or leak on arbitrary bytes.
 *
 * Feeds the input to lp_config_load_string (all of YAML parsing, the schema walk, ${ENV}
 * expansion and validation), formats every diagnostic, and also runs the scalar parsers on the
 * input as one C string.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lp_diags d;
    lp_diags_init(&d);
    struct lp_config *cfg = lp_config_load_string((const char *)data, size, "fuzz.yaml", &d);
    if (cfg) {
        /* A snapshot that loaded must be internally consistent. */
        for (size_t i = 0; i < cfg->n_aliases; i++) {
            const struct lp_alias *a = &cfg->aliases[i];
            if (lp_config_find_alias(cfg, a->name, strlen(a->name)) != a)
                abort();
            for (size_t j = 0; j < a->n_routes; j++)
                if (a->routes[j].backend_idx >= cfg->n_backends)
                    abort();
        }
        lp_config_unref(lp_config_ref(cfg));
    }
    for (size_t i = 0; i < d.n; i++)
        free(lp_diag_format(&d.items[i]));
    lp_diags_free(&d);
    lp_config_unref(cfg);

    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    int64_t v;
    char host[64];
    int port;
    lp_duration_parse(s, &v);
    lp_size_parse(s, &v);
    lp_listen_parse(s, host, sizeof host, &port);
    free(s);
    return 0;
}
