/* registry_demo: the service registry on one libuv loop.
 *   registry_demo --endpoint 127.0.0.1:2379 [--base /services]
 * Creates (or joins) group "demo-api" with common labels, registers two nodes with a
 * TTL, watches the group's nodes, lists them, stops one registration (its delete event
 * arrives with the node as it was), then closes the registry (the other deregisters);
 * with --linger-ms N it keeps node-1 registered N ms longer first. */
#include <etcdreg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  uv_timer_t linger;
  uint64_t linger_ms;
  etcdreg_registry_t *reg;
  etcdreg_registration_t *r1, *r2;
  etcdreg_registry_watch_t *watch;
  int registered, deletes, failed;
} demo_t;

static void fail(demo_t *d, const char *what, int status, const char *msg) {
  fprintf(stderr, "%s: %s (%s)\n", what, etcdreg_strerror(status), msg);
  d->failed = 1;
  etcdreg_registry_close(d->reg, NULL, NULL);
}

static void print_node(const char *prefix, const etcdreg_node_t *n) {
  printf("%s %s/%s port %d path %s labels {", prefix, n->id, n->exporter_type, n->port, n->metrics_path);
  for (size_t i = 0; i < n->label_count; i++) printf("%s%s=%s", i ? ", " : "", n->labels[i].key, n->labels[i].value);
  printf("}\n");
}

static void on_closed(etcdreg_registry_t *reg, void *data) {
  (void)reg;
  (void)data;
  printf("registry closed\n");
}

static void on_linger_done(uv_timer_t *t) {
  demo_t *d = t->data;
  uv_close((uv_handle_t *)t, NULL);
  etcdreg_registry_close(d->reg, on_closed, d); /* ends the watch and deregisters node-1 */
}

static void on_event(etcdreg_registry_watch_t *w, const etcdreg_event_t *ev, void *data) {
  (void)w;
  demo_t *d = data;
  char what[64];
  snprintf(what, sizeof(what), "event: %s %s", etcdreg_reg_event_type_name(ev->type), ev->group);
  if (ev->node) print_node(what, ev->node);
  if (ev->type == ETCDREG_REG_EVENT_DELETE && ev->node && strcmp(ev->node->id, "node-2") == 0) {
    d->deletes++;
    if (d->linger_ms) {
      printf("keeping node-1 registered for %llu ms\n", (unsigned long long)d->linger_ms);
      fflush(stdout);
      uv_timer_start(&d->linger, on_linger_done, d->linger_ms, 0);
    } else {
      etcdreg_registry_close(d->reg, on_closed, d); /* ends the watch and deregisters node-1 */
    }
  }
}

static void on_nodes(etcdreg_registry_t *reg, int status, const etcdreg_node_t *nodes, size_t count, size_t skipped,
                     void *data) {
  (void)reg;
  demo_t *d = data;
  if (status) {
    fail(d, "list", status, "");
    return;
  }
  printf("group demo-api has %zu nodes (%zu undecodable skipped)\n", count, skipped);
  for (size_t i = 0; i < count; i++) print_node("  node", &nodes[i]);
  etcdreg_registration_stop(d->r2); /* its key goes: the watch reports the delete */
}

static void on_registered(etcdreg_registration_t *r, const etcdreg_node_t *n, uint64_t ttl_ms, void *data) {
  (void)r;
  demo_t *d = data;
  printf("registered %s (lease TTL %llu ms)\n", n->id, (unsigned long long)ttl_ms);
  if (++d->registered == 2) etcdreg_nodes_list(d->reg, "demo-api", on_nodes, d);
}

static void on_reg_error(etcdreg_registration_t *r, int err, const char *msg, int attempt, uint64_t retry_in_ms,
                         void *data) {
  (void)r;
  (void)data;
  fprintf(stderr, "register: %s (%s), attempt %d, retry in %llu ms\n", etcdreg_strerror(err), msg, attempt,
          (unsigned long long)retry_in_ms);
}

static void on_reg_ended(etcdreg_registration_t *r, int status, void *data) {
  (void)data;
  (void)r;
  printf("registration ended: %s\n", etcdreg_err_name(status));
}

static void on_watch_ready(etcdreg_registry_watch_t *w, void *data) {
  (void)w;
  demo_t *d = data;
  etcdreg_label_t l1[] = {{"instance", "i-1"}, {"env", "staging"}}; /* node labels win */
  etcdreg_label_t l2[] = {{"instance", "i-2"}};
  etcdreg_node_t n1 = {.id = "node-1", .exporter_type = "node_exporter", .port = 9100, .metrics_path = "/metrics",
                       .labels = l1, .label_count = 2};
  etcdreg_node_t n2 = {.id = "node-2", .exporter_type = "node_exporter", .port = 9101, .metrics_path = "/metrics",
                       .labels = l2, .label_count = 1};
  etcdreg_registration_cbs_t cbs = {on_registered, on_reg_error, on_reg_ended};
  if (etcdreg_register(d->reg, "demo-api", &n1, 10000, NULL, &cbs, d, &d->r1) ||
      etcdreg_register(d->reg, "demo-api", &n2, 10000, NULL, &cbs, d, &d->r2))
    fail(d, "register", ETCDREG_EINVAL, etcdreg_registry_last_error());
}

static void on_watch_ended(etcdreg_registry_watch_t *w, int status, const char *msg, void *data) {
  (void)w;
  (void)data;
  printf("watch ended: %s %s\n", etcdreg_err_name(status), msg);
}

static void on_configured(etcdreg_registry_t *reg, int status, const etcdreg_group_t *g, const char *msg, void *data) {
  demo_t *d = data;
  if (status) {
    fail(d, "configure", status, msg);
    return;
  }
  printf("group %s configured: %zu common labels\n", g->name, g->spec.common_label_count);
  etcdreg_registry_watch_cbs_t wcbs = {on_watch_ready, on_event, on_watch_ended};
  if (etcdreg_registry_watch_group_nodes(reg, "demo-api", &wcbs, d, &d->watch)) fail(d, "watch", ETCDREG_EINVAL, "");
}

static void on_group(etcdreg_registry_t *reg, int status, const etcdreg_group_t *g, const char *msg, void *data) {
  demo_t *d = data;
  if (status) {
    fail(d, "create-or-join", status, msg);
    return;
  }
  printf("group %s ready (created %lld)\n", g->name, (long long)(g->created_ns / 1000000000));
  etcdreg_label_t common[] = {{"env", "production"}, {"team", "platform"}};
  etcdreg_group_spec_t spec = {.common_labels = common, .common_label_count = 2};
  etcdreg_group_configure(reg, "demo-api", &spec, 0, on_configured, d);
}

static void on_open(etcdreg_registry_t *reg, int status, const char *msg, void *data) {
  demo_t *d = data;
  if (status) {
    fail(d, "open", status, msg);
    return;
  }
  printf("registry open at %s\n", etcdreg_registry_base(reg));
  etcdreg_group_create_or_join(reg, "demo-api", on_group, d);
}

int main(int argc, char **argv) {
  const char *endpoint = "127.0.0.1:2379", *base = "/services";
  uint64_t linger_ms = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--endpoint") == 0 && i + 1 < argc) endpoint = argv[++i];
    else if (strcmp(argv[i], "--base") == 0 && i + 1 < argc) base = argv[++i];
    else if (strcmp(argv[i], "--linger-ms") == 0 && i + 1 < argc) linger_ms = strtoull(argv[++i], NULL, 10);
    else {
      fprintf(stderr, "usage: %s [--endpoint host:port] [--base /services] [--linger-ms N]\n", argv[0]);
      return 2;
    }
  }
  uv_loop_t loop;
  uv_loop_init(&loop);
  demo_t d = {0};
  d.linger_ms = linger_ms;
  uv_timer_init(&loop, &d.linger);
  d.linger.data = &d;
  if (!linger_ms) uv_close((uv_handle_t *)&d.linger, NULL);
  setvbuf(stdout, NULL, _IOLBF, 0);
  const char *eps[] = {endpoint, NULL};
  etcdreg_registry_options_t o = {.endpoints = eps, .base = base, .default_timeout_ms = 5000, .max_retries = 3};
  int rv = etcdreg_registry_connect(&loop, &o, on_open, &d, &d.reg);
  if (rv) {
    fprintf(stderr, "registry: %s: %s\n", etcdreg_strerror(rv), etcdreg_registry_last_error());
    return 1;
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  return d.failed || d.deletes != 1 ? 1 : 0;
}
