/* mock.c - llm-mock main: flags, the listening socket, signals, shutdown.
 *
 * Prints exactly "listening on HOST:PORT" (the real port, also for --listen HOST:0) as the first
 * line of stdout, flushed, so a harness can start it on an ephemeral port. SIGTERM / SIGINT stop
 * the loop and everything is freed (exit 0, sanitizer-clean).
 */
#include <arpa/inet.h>
#include <event2/listener.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "mock.h"
#include "util/alloc.h"

static void usage(FILE *f)
{
    fputs("usage: llm-mock [options]\n"
          "  --listen HOST:PORT        address to listen on (PORT 0 = ephemeral; default "
          "127.0.0.1:0)\n"
          "  --name NAME               name echoed in answers and the x-mock-name header (mock)\n"
          "  --latency-ms N            delay before response headers (0)\n"
          "  --ttft-ms N               delay before the first SSE event (0)\n"
          "  --chunks N                SSE content deltas per streamed answer (8)\n"
          "  --chunk-interval-ms N     delay between content deltas (0)\n"
          "  --response-bytes N        approximate size of the answer text (64)\n"
          "  --quiet                   no per-request lines on stderr\n"
          "  --mode any|azure|gemini   refuse what that provider refuses (any)\n"
          "  --key KEY                 the only credential accepted (any, when unset)\n"
          "  --help                    this text\n"
          "Admin API under /_mock/ (script, requests, reset, stats): see docs/mock.md.\n",
          f);
}

static int parse_int(const char *s, const char *flag)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end || v < 0 || v > INT_MAX / 2) {
        fprintf(stderr, "llm-mock: %s needs a non-negative integer, got '%s'\n", flag, s);
        exit(2);
    }
    return (int)v;
}

static void parse_args(int argc, char **argv, struct mock_opts *o)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"name", required_argument, NULL, 'n'},
        {"latency-ms", required_argument, NULL, 'L'},
        {"ttft-ms", required_argument, NULL, 'T'},
        {"chunks", required_argument, NULL, 'c'},
        {"chunk-interval-ms", required_argument, NULL, 'i'},
        {"response-bytes", required_argument, NULL, 'b'},
        {"quiet", no_argument, NULL, 'q'},
        {"mode", required_argument, NULL, 'm'},
        {"key", required_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct mock_opts){
        .listen = "127.0.0.1:0", .name = "mock", .chunks = 8, .response_bytes = 64};
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'l':
            o->listen = optarg;
            break;
        case 'n':
            o->name = optarg;
            break;
        case 'L':
            o->latency_ms = parse_int(optarg, "--latency-ms");
            break;
        case 'T':
            o->ttft_ms = parse_int(optarg, "--ttft-ms");
            break;
        case 'c':
            o->chunks = parse_int(optarg, "--chunks");
            break;
        case 'i':
            o->chunk_interval_ms = parse_int(optarg, "--chunk-interval-ms");
            break;
        case 'b':
            o->response_bytes = parse_int(optarg, "--response-bytes");
            break;
        case 'q':
            o->quiet = true;
            break;
        case 'm':
            if (strcmp(optarg, "any") == 0)
                o->mode = MOCK_MODE_ANY;
            else if (strcmp(optarg, "azure") == 0)
                o->mode = MOCK_MODE_AZURE;
            else if (strcmp(optarg, "gemini") == 0)
                o->mode = MOCK_MODE_GEMINI;
            else {
                fprintf(stderr, "llm-mock: --mode wants any, azure or gemini, got '%s'\n", optarg);
                exit(2);
            }
            break;
        case 'k':
            o->key = optarg;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            exit(2);
        }
    }
    if (optind < argc || strlen(o->name) > 100 || strpbrk(o->name, "\r\n")) {
        usage(stderr);
        exit(2);
    }
}

/* HOST:PORT (IPv4, or [IPv6]:PORT) into a sockaddr. */
static int parse_listen(const char *spec, struct sockaddr_storage *ss, socklen_t *len)
{
    char *dup = lp_xstrdup(spec);
    int rc = -1;
    char *colon = strrchr(dup, ':');
    if (!colon)
        goto out;
    *colon = '\0';
    int port = (int)strtol(colon + 1, NULL, 10);
    char *host = dup;
    memset(ss, 0, sizeof *ss);
    if (host[0] == '[') {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        host[strlen(host) - 1] = '\0';
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        rc = inet_pton(AF_INET6, host + 1, &s6->sin6_addr) == 1 ? 0 : -1;
        *len = sizeof *s6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        if (strcmp(host, "localhost") == 0)
            host = "127.0.0.1";
        rc = inet_pton(AF_INET, host, &s4->sin_addr) == 1 ? 0 : -1;
        *len = sizeof *s4;
    }
out:
    free(dup);
    return rc;
}

static void print_listening(struct evconnlistener *l)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&ss, &len);
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
        port = ntohs(s6->sin6_port);
        printf("listening on [%s]:%d\n", host, port);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
        port = ntohs(s4->sin_port);
        printf("listening on %s:%d\n", host, port);
    }
    fflush(stdout);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                      void *arg)
{
    mock_conn_accept(arg, fd);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    event_base_loopexit(arg, NULL);
}

int main(int argc, char **argv)
{
    struct mock m;
    memset(&m, 0, sizeof m);
    parse_args(argc, argv, &m.opts);
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (parse_listen(m.opts.listen, &ss, &sslen) != 0) {
        fprintf(stderr, "llm-mock: bad --listen '%s' (want HOST:PORT)\n", m.opts.listen);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    m.base = event_base_new();
    TAILQ_INIT(&m.script);
    TAILQ_INIT(&m.conns);
    mock_log_init(&m.log);
    struct evconnlistener *l =
        evconnlistener_new_bind(m.base, on_accept, &m, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                4096, (struct sockaddr *)&ss, (int)sslen);
    if (!l) {
        perror("llm-mock: listen");
        return 1;
    }
    print_listening(l);
    struct event *sigterm = evsignal_new(m.base, SIGTERM, on_signal, m.base);
    struct event *sigint = evsignal_new(m.base, SIGINT, on_signal, m.base);
    evsignal_add(sigterm, NULL);
    evsignal_add(sigint, NULL);
    event_base_dispatch(m.base);
    evconnlistener_free(l);
    mock_conn_free_all(&m);
    mock_script_clear(&m.script);
    mock_log_free(&m.log);
    event_free(sigterm);
    event_free(sigint);
    event_base_free(m.base);
    return 0;
}
