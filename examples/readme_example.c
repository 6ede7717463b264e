#include <etcdreg.h>
#include <stdio.h>

static void on_registered(etcdreg_registration_t *r, const etcdreg_node_t *n, uint64_t ttl_ms, void *data) {
  printf("registered %s/%s, lease TTL %llu ms\n", n->id, n->exporter_type, (unsigned long long)ttl_ms);
}
static void on_reg_error(etcdreg_registration_t *r, int err, const char *msg, int attempt,
                         uint64_t retry_in_ms, void *data) {
  fprintf(stderr, "register: %s (%s), attempt %d, retry in %llu ms\n", etcdreg_strerror(err), msg, attempt,
          (unsigned long long)retry_in_ms);
}
static void on_ended(etcdreg_registration_t *r, int status, void *data) {
  printf("deregistered: %s\n", etcdreg_err_name(status));
}
static void on_event(etcdreg_registry_watch_t *w, const etcdreg_event_t *ev, void *data) {
  if (ev->node) printf("%s %s/%s\n", etcdreg_reg_event_type_name(ev->type), ev->group, ev->node->id);
}

static void on_open(etcdreg_registry_t *reg, int status, const char *msg, void *data) {
  if (status < 0) {
    fprintf(stderr, "open: %s (%s)\n", etcdreg_strerror(status), msg);
    etcdreg_registry_close(reg, NULL, NULL);
    return;
  }
  etcdreg_label_t labels[] = {{"instance", "i-1234567"}};
  etcdreg_node_t node = {.id = "node1", .exporter_type = "node_exporter", .port = 9100,
                         .metrics_path = "/metrics", .labels = labels, .label_count = 1};
  etcdreg_registration_cbs_t cbs = {.registered = on_registered, .error = on_reg_error, .ended = on_ended};
  etcdreg_registration_t *registration;
  if (etcdreg_register(reg, "my-service", &node, 30000 /* TTL, ms */, NULL, &cbs, NULL, &registration) < 0)
    fprintf(stderr, "register: %s\n", etcdreg_registry_last_error());
  etcdreg_registry_watch_cbs_t wcbs = {.event = on_event};
  etcdreg_registry_watch_group_nodes(reg, "my-service", &wcbs, NULL, NULL);
}

int main(void) {
  uv_loop_t *loop = uv_default_loop();
  const char *endpoints[] = {"127.0.0.1:2379", NULL};
  etcdreg_registry_options_t opt = {.endpoints = endpoints, .base = "/services",
                                    .default_timeout_ms = 5000};
  etcdreg_registry_t *reg;
  if (etcdreg_registry_connect(loop, &opt, on_open, NULL, &reg) < 0) {
    fprintf(stderr, "%s\n", etcdreg_registry_last_error());
    return 1;
  }
  return uv_run(loop, UV_RUN_DEFAULT); /* SIGINT handling etc. left out; see tools/etcdreg */
}
