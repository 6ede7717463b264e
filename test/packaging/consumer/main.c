/* A program built only against the installed library: puts and reads back a key. */
#include <etcdreg.h>
#include <stdio.h>
#include <string.h>

static int result = 1;

static void on_range(etcdreg_request_t *req, int status, const etcdreg_range_result_t *res, void *data) {
  etcdreg_client_t *c = data;
  if (status == 0 && res->kv_count == 1 && res->kvs[0].value_len == 9 &&
      memcmp(res->kvs[0].value, "installed", 9) == 0)
    result = 0;
  else
    fprintf(stderr, "range: %s %s\n", etcdreg_strerror(status), etcdreg_request_message(req));
  etcdreg_client_close(c, NULL, NULL);
}

static void on_put(etcdreg_request_t *req, int status, const etcdreg_put_result_t *res, void *data) {
  (void)res;
  etcdreg_client_t *c = data;
  if (status) {
    fprintf(stderr, "put: %s %s\n", etcdreg_strerror(status), etcdreg_request_message(req));
    etcdreg_client_close(c, NULL, NULL);
    return;
  }
  etcdreg_range(c, "/pkg/k", 6, NULL, on_range, c, NULL);
}

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  uv_loop_t *loop = uv_default_loop();
  etcdreg_client_options_t opt;
  etcdreg_client_options_init(&opt);
  const char *eps[] = {argv[1], NULL};
  opt.endpoints = eps;
  etcdreg_client_t *c;
  if (etcdreg_client_new(loop, &opt, &c)) return 1;
  etcdreg_put(c, "/pkg/k", 6, "installed", 9, NULL, on_put, c, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  printf("etcdreg %s: %s\n", etcdreg_version(), result ? "FAILED" : "ok");
  return result;
}
