/* kv_demo: a tour of the KV API on one libuv loop.
 *   kv_demo --endpoint 127.0.0.1:2379
 * Puts a few keys, reads them back by prefix, runs a compare-and-swap transaction,
 * deletes the prefix and closes the client. Every step is a callback on the loop. */
#include <etcdreg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  etcdreg_client_t *client;
  int pending;
  int failed;
  int64_t mod_revision;
} demo_t;

static void step_range(demo_t *d);
static void step_txn(demo_t *d);
static void step_delete(demo_t *d);

static int check(etcdreg_request_t *req, int status, const char *what, demo_t *d) {
  if (status == 0) return 1;
  fprintf(stderr, "%s failed: %s (%s)\n", what, etcdreg_strerror(status), etcdreg_request_message(req));
  d->failed = 1;
  etcdreg_client_close(d->client, NULL, NULL);
  return 0;
}

static void on_put(etcdreg_request_t *req, int status, const etcdreg_put_result_t *res, void *data) {
  demo_t *d = data;
  if (!check(req, status, "put", d)) return;
  printf("put ok at revision %lld\n", (long long)res->header.revision);
  if (--d->pending == 0) step_range(d);
}

static void on_range(etcdreg_request_t *req, int status, const etcdreg_range_result_t *res, void *data) {
  demo_t *d = data;
  if (!check(req, status, "range", d)) return;
  printf("range /demo/ -> %zu keys (revision %lld)\n", res->kv_count, (long long)res->header.revision);
  for (size_t i = 0; i < res->kv_count; i++) {
    const etcdreg_kv_t *kv = &res->kvs[i];
    printf("  %.*s = %.*s (mod revision %lld)\n", (int)kv->key_len, (const char *)kv->key,
           (int)kv->value_len, (const char *)kv->value, (long long)kv->mod_revision);
    if (kv->key_len == 12 && memcmp(kv->key, "/demo/colour", 12) == 0) d->mod_revision = kv->mod_revision;
  }
  step_txn(d);
}

static void on_txn(etcdreg_request_t *req, int status, const etcdreg_txn_result_t *res, void *data) {
  demo_t *d = data;
  if (!check(req, status, "txn", d)) return;
  printf("compare-and-swap on /demo/colour: %s\n", res->succeeded ? "swapped" : "lost the race");
  step_delete(d);
}

static void on_delete(etcdreg_request_t *req, int status, const etcdreg_delete_result_t *res, void *data) {
  demo_t *d = data;
  if (!check(req, status, "delete", d)) return;
  printf("deleted %lld keys under /demo/\n", (long long)res->deleted);
  etcdreg_client_close(d->client, NULL, NULL);
}

static void step_range(demo_t *d) {
  etcdreg_range_opts_t o = {.prefix = 1, .sort_order = ETCDREG_SORT_ASCEND};
  etcdreg_range(d->client, "/demo/", 6, &o, on_range, d, NULL);
}

static void step_txn(demo_t *d) {
  etcdreg_compare_t cmp = {.target = ETCDREG_CMP_MOD, .result = ETCDREG_CMP_EQUAL,
                           .key = "/demo/colour", .key_len = 12, .number = d->mod_revision};
  etcdreg_txn_op_t put = {.type = ETCDREG_OP_PUT, .key = "/demo/colour", .key_len = 12,
                          .value = "green", .value_len = 5};
  etcdreg_txn_t txn = {.compares = &cmp, .compare_count = 1, .success = &put, .success_count = 1};
  etcdreg_txn(d->client, &txn, on_txn, d, NULL);
}

static void step_delete(demo_t *d) {
  etcdreg_delete_opts_t o = {.prefix = 1};
  etcdreg_delete(d->client, "/demo/", 6, &o, on_delete, d, NULL);
}

int main(int argc, char **argv) {
  const char *endpoint = "127.0.0.1:2379";
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--endpoint") == 0 && i + 1 < argc) endpoint = argv[++i];
    else {
      fprintf(stderr, "usage: %s [--endpoint host:port]\n", argv[0]);
      return 2;
    }
  }
  uv_loop_t loop;
  uv_loop_init(&loop);
  etcdreg_client_options_t opt;
  etcdreg_client_options_init(&opt);
  const char *endpoints[] = {endpoint, NULL};
  opt.endpoints = endpoints;
  demo_t d = {0};
  int rv = etcdreg_client_new(&loop, &opt, &d.client);
  if (rv) {
    fprintf(stderr, "client: %s: %s\n", etcdreg_strerror(rv), etcdreg_last_option_error());
    return 1;
  }
  const char *keys[] = {"/demo/colour", "/demo/shape", "/demo/size"};
  const char *vals[] = {"blue", "circle", "large"};
  for (int i = 0; i < 3; i++) {
    etcdreg_put(d.client, keys[i], strlen(keys[i]), vals[i], strlen(vals[i]), NULL, on_put, &d, NULL);
    d.pending++;
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  return d.failed ? 1 : 0;
}
