// HTTP(S) downloads for updates through libcurl (libcurl.so.4), loaded at run time: only the
// update path pays for it (the daemon never maps TLS libraries it does not use), and a box
// without libcurl still runs, saying downloads are unavailable. The option numbers are
// libcurl's public ABI (curl.h), declared here so the build needs no curl headers.
#define _GNU_SOURCE
#include "CAIBoxOS.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

enum {
    OPT_WRITEDATA = 10001, OPT_URL = 10002, OPT_RANGE = 10007, OPT_ERRORBUFFER = 10010, OPT_USERAGENT = 10018,
    OPT_WRITEFUNCTION = 20011, OPT_LOW_SPEED_LIMIT = 19, OPT_LOW_SPEED_TIME = 20, OPT_FAILONERROR = 45,
    OPT_FOLLOWLOCATION = 52, OPT_MAXREDIRS = 68, OPT_CONNECTTIMEOUT = 78, OPT_NOSIGNAL = 99, OPT_PROTOCOLS = 181,
    OPT_REDIR_PROTOCOLS = 182, OPT_CAINFO = 10065,
};
enum { INFO_RESPONSE_CODE = 0x200000 + 2 };
enum { PROTO_HTTP = 1, PROTO_HTTPS = 2 };

typedef void CURL;
static struct {
    int loaded;
    CURL *(*init)(void);
    int (*setopt)(CURL *, int, ...);
    int (*perform)(CURL *);
    int (*getinfo)(CURL *, int, ...);
    void (*cleanup)(CURL *);
    const char *(*strerror)(int);
} curl;

static int load_curl(void) {
    if (curl.loaded) return curl.loaded > 0 ? 0 : -1;
    void *lib = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
    if (lib) {
        curl.init = (CURL * (*)(void)) dlsym(lib, "curl_easy_init");
        curl.setopt = (int (*)(CURL *, int, ...))dlsym(lib, "curl_easy_setopt");
        curl.perform = (int (*)(CURL *))dlsym(lib, "curl_easy_perform");
        curl.getinfo = (int (*)(CURL *, int, ...))dlsym(lib, "curl_easy_getinfo");
        curl.cleanup = (void (*)(CURL *))dlsym(lib, "curl_easy_cleanup");
        curl.strerror = (const char *(*)(int))dlsym(lib, "curl_easy_strerror");
    }
    int ok = lib && curl.init && curl.setopt && curl.perform && curl.getinfo && curl.cleanup && curl.strerror;
    curl.loaded = ok ? 1 : -1;
    return ok ? 0 : -1;
}

struct transfer {
    CURL *handle;
    aibox_http_sink sink;
    void *context;
    unsigned long long offset;
    struct aibox_http_result *result;
    int checked;
};

static size_t on_data(char *data, size_t size, size_t count, void *p) {
    struct transfer *t = p;
    size_t n = size * count;
    if (!t->checked) {
        t->checked = 1;
        long code = 0;
        curl.getinfo(t->handle, INFO_RESPONSE_CODE, &code);
        t->result->status = code;
        // A resumed request answered with the whole file: the caller must start over.
        if (t->offset > 0 && code == 200) {
            t->result->range_ignored = 1;
            return 0;
        }
    }
    size_t taken = t->sink(data, n, t->context);
    t->result->received += (long long)taken;
    return taken;
}

int aibox_http_get(const char *url, unsigned long long offset, long connect_timeout, long stall_timeout, const char *user_agent,
                   const char *ca_file, aibox_http_sink sink, void *context, struct aibox_http_result *result) {
    memset(result, 0, sizeof *result);
    if (load_curl() != 0) {
        snprintf(result->error, sizeof result->error, "libcurl (libcurl.so.4) is not installed: downloads are unavailable");
        return -1;
    }
    CURL *h = curl.init();
    if (!h) {
        snprintf(result->error, sizeof result->error, "curl_easy_init failed");
        return 1;
    }
    char errbuf[256] = "";
    char range[32];
    struct transfer t = {h, sink, context, offset, result, 0};
    curl.setopt(h, OPT_URL, url);
    curl.setopt(h, OPT_PROTOCOLS, (long)(PROTO_HTTP | PROTO_HTTPS));
    curl.setopt(h, OPT_REDIR_PROTOCOLS, (long)(PROTO_HTTP | PROTO_HTTPS));
    curl.setopt(h, OPT_FOLLOWLOCATION, 1L);
    curl.setopt(h, OPT_MAXREDIRS, 5L);
    curl.setopt(h, OPT_FAILONERROR, 1L);
    curl.setopt(h, OPT_NOSIGNAL, 1L);
    curl.setopt(h, OPT_CONNECTTIMEOUT, connect_timeout);
    // A transfer slower than 1 byte/s for stall_timeout seconds is cut (and resumed by the caller).
    curl.setopt(h, OPT_LOW_SPEED_LIMIT, 1L);
    curl.setopt(h, OPT_LOW_SPEED_TIME, stall_timeout);
    curl.setopt(h, OPT_USERAGENT, user_agent);
    // A private update server's CA (system.toml update-ca); otherwise the system's store.
    if (ca_file && ca_file[0]) curl.setopt(h, OPT_CAINFO, ca_file);
    curl.setopt(h, OPT_ERRORBUFFER, errbuf);
    curl.setopt(h, OPT_WRITEFUNCTION, on_data);
    curl.setopt(h, OPT_WRITEDATA, &t);
    if (offset > 0) {
        snprintf(range, sizeof range, "%llu-", offset);
        curl.setopt(h, OPT_RANGE, range);
    }
    int code = curl.perform(h);
    long status = 0;
    curl.getinfo(h, INFO_RESPONSE_CODE, &status);
    result->status = status;
    result->curl_code = code;
    if (code != 0) snprintf(result->error, sizeof result->error, "%s", errbuf[0] ? errbuf : curl.strerror(code));
    curl.cleanup(h);
    return code == 0 ? 0 : 1;
}
