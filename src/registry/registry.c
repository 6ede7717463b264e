/* The registry: open and close, groups, node listing and deletion. Every operation is a
 * small state machine over the client's asynchronous calls, with the registry's default
 * deadline; its callback fires exactly once. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

static _Thread_local char last_error[256];

const char *etcdreg_registry_last_error(void) { return last_error; }

void etcdreg__reg_set_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof(last_error), fmt, ap);
  va_end(ap);
}

uint32_t etcdreg__reg_rand(etcdreg_registry_t *reg) {
  reg->rng ^= reg->rng << 13;
  reg->rng ^= reg->rng >> 17;
  reg->rng ^= reg->rng << 5;
  return reg->rng;
}

const char *etcdreg_reg_event_type_name(etcdreg_reg_event_type_t t) {
  switch (t) {
  case ETCDREG_REG_EVENT_CREATE: return "create";
  case ETCDREG_REG_EVENT_UPDATE: return "update";
  case ETCDREG_REG_EVENT_DELETE: return "delete";
  default: return "unknown";
  }
}

const char *etcdreg_registry_base(const etcdreg_registry_t *reg) { return reg ? reg->base : ""; }
etcdreg_client_t *etcdreg_registry_client(const etcdreg_registry_t *reg) { return reg ? reg->client : NULL; }

/* ---- operations: one context per call ---- */

typedef struct reg_op {
  etcdreg_registry_t *reg;
  void *data;
  etcdreg_group_cb group_cb;
  etcdreg_status_cb status_cb;
  etcdreg_group_list_cb list_cb;
  etcdreg_nodes_cb nodes_cb;
  void (*cleanup_cb)(void *data, int status);
  char *group;
  char *key;
  char *json;               /* spec to write (configure) */
  etcdreg_group_spec_t spec;/* owned copy for configure */
  etcdreg_arena_t spec_arena;
  int64_t expected_rev;
  etcdreg_group_update_fn update;
  int attempts, max_attempts;
  int64_t created_ns;
} reg_op_t;

static reg_op_t *op_new(etcdreg_registry_t *reg, void *data) {
  reg_op_t *op = calloc(1, sizeof(*op));
  if (!op) return NULL;
  op->reg = reg;
  op->data = data;
  etcdreg_arena_init(&op->spec_arena);
  reg->pending_ops++;
  return op;
}

static void op_free(reg_op_t *op) {
  etcdreg_registry_t *reg = op->reg;
  free(op->group);
  free(op->key);
  free(op->json);
  etcdreg_arena_free(&op->spec_arena);
  free(op);
  reg->pending_ops--;
  etcdreg__reg_maybe_finish_close(reg);
}

static void op_group_done(reg_op_t *op, int status, const etcdreg_group_t *g, const char *msg) {
  if (op->group_cb) op->group_cb(op->reg, status, status ? NULL : g, msg ? msg : "", op->data);
  op_free(op);
}

static void op_status_done(reg_op_t *op, int status, const char *msg) {
  if (op->status_cb) op->status_cb(op->reg, status, msg ? msg : "", op->data);
  op_free(op);
}

static int check_usable(etcdreg_registry_t *reg) {
  if (!reg) return ETCDREG_EINVAL;
  if (reg->closing) return ETCDREG_ECLOSED;
  return 0;
}

static int check_group(const char *group) {
  char err[200];
  if (etcdreg__validate_group_name(group, err, sizeof(err))) {
    etcdreg__reg_set_error("%s", err);
    return ETCDREG_EINVAL;
  }
  return 0;
}

/* Decodes a group value read from etcd. */
static int decode_group(etcdreg_arena_t *a, const etcdreg_kv_t *kv, etcdreg_group_t *g, char *err, size_t len) {
  int rv = etcdreg__group_decode(a, (const char *)kv->value, kv->value_len, g, err, len);
  if (rv) return rv;
  g->mod_revision = kv->mod_revision;
  return 0;
}

/* ---- open / close ---- */

typedef struct {
  etcdreg_registry_t *reg;
  etcdreg_registry_open_cb cb;
  void *data;
} open_ctx_t;

static void on_open_probe(etcdreg_request_t *req, int status, const etcdreg_range_result_t *res, void *data) {
  (void)res;
  open_ctx_t *o = data;
  etcdreg_registry_t *reg = o->reg;
  reg->opened = 1;
  reg->pending_ops--;
  if (o->cb) o->cb(reg, status, status ? etcdreg_request_message(req) : "", o->data);
  free(o);
  etcdreg__reg_maybe_finish_close(reg);
}

static void reg_check_fire(etcdreg_timer_entry_t *e) {
  etcdreg_registry_t *reg = (etcdreg_registry_t *)((char *)e - offsetof(etcdreg_registry_t, close_check));
  etcdreg__reg_maybe_finish_close(reg);
}

static int registry_new(etcdreg_client_t *client, const char *base, etcdreg_registry_t **out) {
  char err[200];
  char *clean = NULL;
  if (etcdreg__base_clean(base, &clean, err, sizeof(err))) {
    etcdreg__reg_set_error("%s", err);
    return ETCDREG_EINVAL;
  }
  etcdreg_registry_t *reg = calloc(1, sizeof(*reg));
  if (!reg) {
    free(clean);
    return ETCDREG_ENOMEM;
  }
  reg->client = client;
  reg->base = clean;
  reg->rng = (uint32_t)(uintptr_t)reg ^ (uint32_t)uv_hrtime() ^ 0x2545f491u;
  if (!reg->rng) reg->rng = 7;
  etcdreg_timer_entry_init(&reg->close_check, reg_check_fire);
  if (etcdreg_timerq_init(etcdreg_client_loop(client), &reg->timers)) {
    free(clean);
    free(reg);
    return ETCDREG_ENOMEM;
  }
  *out = reg;
  return 0;
}

static void on_timers_closed(etcdreg_timerq_t *q);

/* Undoes registry_new before anything was started: the timer heap closes from the loop
 * and frees the registry there (no callback). */
static void registry_free_now(etcdreg_registry_t *reg) {
  reg->closing = reg->finished = 1;
  etcdreg_timerq_close(&reg->timers, on_timers_closed);
}

int etcdreg_registry_open(etcdreg_client_t *client, const char *base, etcdreg_registry_open_cb cb,
                          void *data, etcdreg_registry_t **out) {
  last_error[0] = 0;
  if (!client || !out) return ETCDREG_EINVAL;
  etcdreg_registry_t *reg;
  int rv = registry_new(client, base, &reg);
  if (rv) return rv;
  open_ctx_t *o = calloc(1, sizeof(*o));
  if (!o) {
    registry_free_now(reg);
    return ETCDREG_ENOMEM;
  }
  o->reg = reg;
  o->cb = cb;
  o->data = data;
  /* The connection check reads nothing outside base: works under RBAC limited to it. */
  char *prefix = etcdreg__base_prefix(reg->base);
  etcdreg_range_opts_t ro = {.prefix = 1, .limit = 1, .keys_only = 1, .timeout_ms = reg->timeout_ms};
  rv = prefix ? etcdreg_range(client, prefix, strlen(prefix), &ro, on_open_probe, o, NULL) : ETCDREG_ENOMEM;
  free(prefix);
  if (rv) {
    free(o);
    registry_free_now(reg);
    return rv;
  }
  reg->pending_ops++;
  *out = reg;
  return 0;
}

int etcdreg_registry_connect(uv_loop_t *loop, const etcdreg_registry_options_t *opt,
                             etcdreg_registry_open_cb cb, void *data, etcdreg_registry_t **out) {
  last_error[0] = 0;
  if (!loop || !opt || !out) return ETCDREG_EINVAL;
  if (!opt->endpoints || !opt->endpoints[0]) {
    etcdreg__reg_set_error("etcd endpoints cannot be empty");
    return ETCDREG_EINVAL;
  }
  etcdreg_client_options_t co;
  etcdreg_client_options_init(&co);
  co.endpoints = opt->endpoints;
  co.username = opt->username && opt->username[0] ? opt->username : NULL;
  co.password = co.username ? opt->password : NULL;
  if (opt->default_timeout_ms) co.request_timeout_ms = opt->default_timeout_ms;
  if (opt->max_retries > 0) co.max_retries = opt->max_retries;
  else if (opt->max_retries < 0) co.max_retries = 0; /* negative: no retries */
  etcdreg_client_t *client;
  int rv = etcdreg_client_new(loop, &co, &client);
  if (rv) {
    etcdreg__reg_set_error("%s", etcdreg_last_option_error());
    return rv;
  }
  rv = etcdreg_registry_open(client, opt->base, cb, data, out);
  if (rv) {
    etcdreg_client_close(client, NULL, NULL);
    return rv;
  }
  (*out)->owns_client = 1;
  (*out)->timeout_ms = opt->default_timeout_ms;
  return 0;
}

static void on_timers_closed(etcdreg_timerq_t *q) {
  etcdreg_registry_t *reg = (etcdreg_registry_t *)((char *)q - offsetof(etcdreg_registry_t, timers));
  etcdreg_registry_close_cb cb = reg->close_cb;
  void *data = reg->close_data;
  if (cb) cb(reg, data);
  free(reg->base);
  free(reg);
}

static void on_owned_client_closed(etcdreg_client_t *c, void *data) {
  (void)c;
  etcdreg_registry_t *reg = data;
  etcdreg_timerq_close(&reg->timers, on_timers_closed);
}

void etcdreg__reg_maybe_finish_close(etcdreg_registry_t *reg) {
  if (!reg->closing || reg->finished) return;
  if (reg->pending_ops || !etcdreg__registrations_idle(reg) || !etcdreg__rwatches_idle(reg)) return;
  if (etcdreg_timer_entry_active(&reg->close_check)) return;
  reg->finished = 1;
  if (reg->owns_client) {
    etcdreg_client_close(reg->client, on_owned_client_closed, reg);
  } else {
    etcdreg_timerq_close(&reg->timers, on_timers_closed);
  }
}

int etcdreg_registry_close(etcdreg_registry_t *reg, etcdreg_registry_close_cb cb, void *data) {
  if (!reg) return ETCDREG_EINVAL;
  if (reg->closing) return ETCDREG_ECLOSED;
  reg->closing = 1;
  reg->close_cb = cb;
  reg->close_data = data;
  etcdreg__rwatches_close(reg);
  etcdreg__registrations_close(reg);
  /* Finish from the loop, never inside this call. */
  etcdreg_timerq_add(&reg->timers, &reg->close_check, uv_now(etcdreg_client_loop(reg->client)));
  return 0;
}

/* ---- groups ---- */

static void on_create_or_join(etcdreg_request_t *req, int status, const etcdreg_txn_result_t *res, void *data) {
  reg_op_t *op = data;
  if (status) {
    op_group_done(op, status, NULL, etcdreg_request_message(req));
    return;
  }
  etcdreg_arena_t a;
  etcdreg_arena_init(&a);
  etcdreg_group_t g;
  char err[200] = "";
  int rv = 0;
  if (res->succeeded) {
    memset(&g, 0, sizeof(g));
    g.name = op->group;
    g.spec.username = "";
    g.spec.password = "";
    g.created_ns = op->created_ns;
    g.mod_revision = res->header.revision;
  } else if (res->response_count == 1 && res->responses[0].type == ETCDREG_OP_RANGE &&
             res->responses[0].u.range.kv_count == 1) {
    rv = decode_group(&a, &res->responses[0].u.range.kvs[0], &g, err, sizeof(err));
  } else {
    rv = ETCDREG_ENOTFOUND; /* deleted between the compare and the read */
    snprintf(err, sizeof(err), "group %s vanished while joining", op->group);
  }
  op_group_done(op, rv, &g, err);
  etcdreg_arena_free(&a);
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int etcdreg_group_create_or_join(etcdreg_registry_t *reg, const char *group, etcdreg_group_cb cb, void *data) {
  int rv = check_usable(reg);
  if (rv) return rv;
  if (!cb) return ETCDREG_EINVAL;
  if ((rv = check_group(group))) return rv;
  reg_op_t *op = op_new(reg, data);
  if (!op) return ETCDREG_ENOMEM;
  op->group_cb = cb;
  op->group = strdup(group);
  op->key = etcdreg__group_key(reg->base, group);
  op->created_ns = now_ns();
  etcdreg_group_spec_t empty = {"", "", NULL, 0};
  op->json = etcdreg__group_encode(group, &empty, op->created_ns);
  if (!op->group || !op->key || !op->json) {
    op->group_cb = NULL;
    op_free(op);
    return ETCDREG_ENOMEM;
  }
  size_t klen = strlen(op->key);
  etcdreg_compare_t cmp = {.target = ETCDREG_CMP_CREATE, .result = ETCDREG_CMP_EQUAL, .key = op->key, .key_len = klen, .number = 0};
  etcdreg_txn_op_t put = {.type = ETCDREG_OP_PUT, .key = op->key, .key_len = klen, .value = op->json, .value_len = strlen(op->json)};
  etcdreg_txn_op_t get = {.type = ETCDREG_OP_RANGE, .key = op->key, .key_len = klen};
  etcdreg_txn_t txn = {&cmp, 1, &put, 1, &get, 1, reg->timeout_ms};
  rv = etcdreg_txn(reg->client, &txn, on_create_or_join, op, NULL);
  if (rv) {
    op->group_cb = NULL;
    op_free(op);
  }
  return rv;
}

/* The group a range read: 0 with *g decoded on `a`, or nonzero once `op` has been
 * completed with the error (failed read, not found, undecodable). */
static int take_group(reg_op_t *op, etcdreg_request_t *req, int status, const etcdreg_range_result_t *res,
                      etcdreg_arena_t *a, etcdreg_group_t *g) {
  char err[200] = "";
  if (status) {
    op_group_done(op, status, NULL, etcdreg_request_message(req));
    return 1;
  }
  if (res->kv_count == 0) {
    snprintf(err, sizeof(err), "group %s not found", op->group);
    op_group_done(op, ETCDREG_ENOTFOUND, NULL, err);
    return 1;
  }
  int rv = decode_group(a, &res->kvs[0], g, err, sizeof(err));
  if (rv) op_group_done(op, rv, NULL, err);
  return rv;
}

static void on_group_get(etcdreg_request_t *req, int status, const etcdreg_range_result_t *res, void *data) {
  reg_op_t *op = data;
  etcdreg_arena_t a;
  etcdreg_arena_init(&a);
  etcdreg_group_t g;
  if (!take_group(op, req, status, res, &a, &g)) op_group_done(op, 0, &g, "");
  etcdreg_arena_free(&a);
}

static int start_group_read(reg_op_t *op, etcdreg_range_cb cb) {
  etcdreg_range_opts_t ro = {.timeout_ms = op->reg->timeout_ms};
  return etcdreg_range(op->reg->client, op->key, strlen(op->key), &ro, cb, op, NULL);
}

int etcdreg_group_get(etcdreg_registry_t *reg, const char *group, etcdreg_group_cb cb, void *data) {
  int rv = check_usable(reg);
  if (rv) return rv;
  if (!cb) return ETCDREG_EINVAL;
  if ((rv = check_group(group))) return rv;
  reg_op_t *op = op_new(reg, data);
  if (!op) return ETCDREG_ENOMEM;
  op->group_cb = cb;
  op->group = strdup(group);
  op->key = etcdreg__group_key(reg->base, group);
  rv = op->group && op->key ? start_group_read(op, on_group_get) : ETCDREG_ENOMEM;
  if (rv) {
    op->group_cb = NULL;
    op_free(op);
  }
  return rv;
}

/* configure and update share the write: CAS on the mod revision. */
static void on_group_written(etcdreg_request_t *req, int status, const etcdreg_txn_result_t *res, void *data);
static void on_update_read(etcdreg_request_t *req, int status, const etcdreg_range_result_t *res, void *data);

static int write_group(reg_op_t *op, const etcdreg_group_t *current, const etcdreg_group_spec_t *spec) {
  free(op->json);
  /* name and created are kept as read; only the spec changes (as in the Go library). */
  op->json = etcdreg__group_encode(current->name && current->name[0] ? current->name : op->group, spec,
                                   current->created_ns);
  if (!op->json) return ETCDREG_ENOMEM;
  int64_t rev = op->expected_rev ? op->expected_rev : current->mod_revision;
  size_t klen = strlen(op->key);
  etcdreg_compare_t cmp = {.target = ETCDREG_CMP_MOD, .result = ETCDREG_CMP_EQUAL, .key = op->key, .key_len = klen, .number = rev};
  etcdreg_txn_op_t put = {.type = ETCDREG_OP_PUT, .key = op->key, .key_len = klen, .value = op->json, .value_len = strlen(op->json)};
  etcdreg_txn_t txn = {&cmp, 1, &put, 1, NULL, 0, op->reg->timeout_ms};
  return etcdreg_txn(op->reg->client, &txn, on_group_written, op, NULL);
}

static void on_group_written(etcdreg_request_t *req, int status, const etcdreg_txn_result_t *res, void *data) {
  reg_op_t *op = data;
  if (status) {
    op_group_done(op, status, NULL, etcdreg_request_message(req));
    return;
  }
  if (!res->succeeded) {
    if (op->update && op->attempts < op->max_attempts && !op->expected_rev && !op->reg->closing) {
      int rv = start_group_read(op, on_update_read); /* read, modify, CAS again */
      if (rv) op_group_done(op, rv, NULL, "could not retry the update");
      return;
    }
    op_group_done(op, ETCDREG_ECONFLICT, NULL, "concurrent modification detected, please retry");
    return;
  }
  /* Report the group as written. */
  etcdreg_arena_t a;
  etcdreg_arena_init(&a);
  etcdreg_group_t g;
  char err[200] = "";
  int rv = etcdreg__group_decode(&a, op->json, strlen(op->json), &g, err, sizeof(err));
  g.mod_revision = res->header.revision;
  op_group_done(op, rv, &g, err);
  etcdreg_arena_free(&a);
}

static void on_configure_read(etcdreg_request_t *req, int status, const etcdreg_range_result_t *res, void *data) {
  reg_op_t *op = data;
  etcdreg_arena_t a;
  etcdreg_arena_init(&a);
  etcdreg_group_t g;
  if (!take_group(op, req, status, res, &a, &g)) {
    int rv = write_group(op, &g, &op->spec);
    if (rv) op_group_done(op, rv, NULL, "could not write the group");
  }
  etcdreg_arena_free(&a);
}

static int copy_spec(etcdreg_arena_t *a, const etcdreg_group_spec_t *in, etcdreg_group_spec_t *out) {
  out->username = etcdreg_arena_dup(a, in->username ? in->username : "", strlen(in->username ? in->username : "") + 1);
  out->password = etcdreg_arena_dup(a, in->password ? in->password : "", strlen(in->password ? in->password : "") + 1);
  etcdreg_label_t *labels = NULL;
  int rv = etcdreg__labels_sort_copy(a, in->common_labels, in->common_label_count, &labels);
  out->common_labels = labels;
  out->common_label_count = in->common_label_count;
  return rv || a->failed ? ETCDREG_ENOMEM : 0;
}

int etcdreg_group_configure(etcdreg_registry_t *reg, const char *group, const etcdreg_group_spec_t *spec,
                            int64_t expected_mod_revision, etcdreg_group_cb cb, void *data) {
  int rv = check_usable(reg);
  if (rv) return rv;
  if (!cb || !spec || expected_mod_revision < 0) return ETCDREG_EINVAL;
  if ((rv = check_group(group))) return rv;
  char err[200];
  if (etcdreg__validate_common_labels(spec->common_labels, spec->common_label_count, err, sizeof(err))) {
    etcdreg__reg_set_error("%s", err);
    return ETCDREG_EINVAL;
  }
  reg_op_t *op = op_new(reg, data);
  if (!op) return ETCDREG_ENOMEM;
  op->group_cb = cb;
  op->group = strdup(group);
  op->key = etcdreg__group_key(reg->base, group);
  op->expected_rev = expected_mod_revision;
  rv = !op->group || !op->key ? ETCDREG_ENOMEM : copy_spec(&op->spec_arena, spec, &op->spec);
  if (!rv) rv = start_group_read(op, on_configure_read);
  if (rv) {
    op->group_cb = NULL;
    op_free(op);
  }
  return rv;
}

static void on_update_read(etcdreg_request_t *req, int status, const etcdreg_range_result_t *res, void *data) {
  reg_op_t *op = data;
  op->attempts++;
  etcdreg_arena_t a;
  etcdreg_arena_init(&a);
  etcdreg_group_t g;
  if (take_group(op, req, status, res, &a, &g)) {
    etcdreg_arena_free(&a);
    return;
  }
  char err[200] = "";
  etcdreg_group_spec_t spec = g.spec; /* the function edits a copy */
  int rv = op->update(&g, &spec, op->data);
  if (rv) snprintf(err, sizeof(err), "update function failed: %s", etcdreg_strerror(rv));
  else if (etcdreg__validate_common_labels(spec.common_labels, spec.common_label_count, err, sizeof(err)))
    rv = ETCDREG_EINVAL;
  else
    rv = write_group(op, &g, &spec);
  etcdreg_arena_free(&a);
  if (rv) op_group_done(op, rv, NULL, err[0] ? err : "could not write the group");
}

int etcdreg_group_update(etcdreg_registry_t *reg, const char *group, etcdreg_group_update_fn update,
                         int max_attempts, etcdreg_group_cb cb, void *data) {
  int rv = check_usable(reg);
  if (rv) return rv;
  if (!cb || !update || max_attempts < 0) return ETCDREG_EINVAL;
  if ((rv = check_group(group))) return rv;
  reg_op_t *op = op_new(reg, data);
  if (!op) return ETCDREG_ENOMEM;
  op->group_cb = cb;
  op->update = update;
  op->max_attempts = max_attempts ? max_attempts : 10;
  op->group = strdup(group);
  op->key = etcdreg__group_key(reg->base, group);
  rv = op->group && op->key ? start_group_read(op, on_update_read) : ETCDREG_ENOMEM;
  if (rv) {
    op->group_cb = NULL;
    op_free(op);
  }
  return rv;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

static void on_group_list(etcdreg_request_t *req, int status, const etcdreg_range_result_t *res, void *data) {
  reg_op_t *op = data;
  if (status) {
    (void)req;
    op->list_cb(op->reg, status, NULL, 0, op->data);
    op_free(op);
    return;
  }
  /* Group config keys are "<base>/<name>" with a valid name: nothing deeper. */
  size_t blen = strlen(op->reg->base) + 1;
  const char **names = calloc(res->kv_count + 1, sizeof(char *));
  etcdreg_arena_t a;
  etcdreg_arena_init(&a);
  size_t n = 0;
  for (size_t i = 0; names && i < res->kv_count; i++) {
    const etcdreg_kv_t *kv = &res->kvs[i];
    if (kv->key_len <= blen) continue;
    const char *rel = (const char *)kv->key + blen;
    size_t rlen = kv->key_len - blen;
    if (memchr(rel, '/', rlen)) continue;
    char *name = etcdreg_arena_alloc(&a, rlen + 1);
    if (!name) break;
    memcpy(name, rel, rlen);
    char verr[160];
    if (etcdreg__validate_group_name(name, verr, sizeof(verr))) continue;
    names[n++] = name;
  }
  if (names) qsort(names, n, sizeof(char *), cmp_str);
  op->list_cb(op->reg, names ? 0 : ETCDREG_ENOMEM, names, n, op->data);
  free(names);
  etcdreg_arena_free(&a);
  op_free(op);
}

int etcdreg_group_list(etcdreg_registry_t *reg, etcdreg_group_list_cb cb, void *data) {
  int rv = check_usable(reg);
  if (rv) return rv;
  if (!cb) return ETCDREG_EINVAL;
  reg_op_t *op = op_new(reg, data);
  if (!op) return ETCDREG_ENOMEM;
  op->list_cb = cb;
  op->key = etcdreg__base_prefix(reg->base);
  etcdreg_range_opts_t ro = {.prefix = 1, .keys_only = 1, .timeout_ms = reg->timeout_ms};
  rv = op->key ? etcdreg_range(reg->client, op->key, strlen(op->key), &ro, on_group_list, op, NULL) : ETCDREG_ENOMEM;
  if (rv) {
    op->list_cb = NULL;
    op_free(op);
  }
  return rv;
}

static void on_group_deleted(etcdreg_request_t *req, int status, const etcdreg_txn_result_t *res, void *data) {
  (void)res;
  reg_op_t *op = data;
  op_status_done(op, status, status ? etcdreg_request_message(req) : "");
}

int etcdreg_group_delete(etcdreg_registry_t *reg, const char *group, etcdreg_status_cb cb, void *data) {
  int rv = check_usable(reg);
  if (rv) return rv;
  if (!cb) return ETCDREG_EINVAL;
  if ((rv = check_group(group))) return rv;
  reg_op_t *op = op_new(reg, data);
  if (!op) return ETCDREG_ENOMEM;
  op->status_cb = cb;
  op->key = etcdreg__group_key(reg->base, group);
  op->json = etcdreg__group_prefix(reg->base, group);
  if (!op->key || !op->json) {
    op->status_cb = NULL;
    op_free(op);
    return ETCDREG_ENOMEM;
  }
  /* The exact key and "<base>/<group>/": a sibling "grp2" is never touched. */
  etcdreg_delete_opts_t all = {.prefix = 1};
  etcdreg_txn_op_t ops[2] = {
      {.type = ETCDREG_OP_DELETE, .key = op->key, .key_len = strlen(op->key)},
      {.type = ETCDREG_OP_DELETE, .key = op->json, .key_len = strlen(op->json), .del = &all},
  };
  etcdreg_txn_t txn = {NULL, 0, ops, 2, NULL, 0, reg->timeout_ms};
  rv = etcdreg_txn(reg->client, &txn, on_group_deleted, op, NULL);
  if (rv) {
    op->status_cb = NULL;
    op_free(op);
  }
  return rv;
}

/* ---- nodes ---- */

static void on_nodes_list(etcdreg_request_t *req, int status, const etcdreg_range_result_t *res, void *data) {
  (void)req;
  reg_op_t *op = data;
  if (status) {
    op->nodes_cb(op->reg, status, NULL, 0, 0, op->data);
    op_free(op);
    return;
  }
  etcdreg_arena_t a;
  etcdreg_arena_init(&a);
  etcdreg_node_t *nodes = ETCDREG_ARENA_NEW(&a, etcdreg_node_t, res->kv_count ? res->kv_count : 1);
  size_t n = 0, skipped = 0;
  char err[200];
  for (size_t i = 0; nodes && i < res->kv_count; i++) {
    if (etcdreg__node_decode(&a, (const char *)res->kvs[i].value, res->kvs[i].value_len, &nodes[n], err, sizeof(err)))
      skipped++;
    else
      n++;
  }
  op->nodes_cb(op->reg, nodes ? 0 : ETCDREG_ENOMEM, nodes, n, skipped, op->data);
  etcdreg_arena_free(&a);
  op_free(op);
}

int etcdreg_nodes_list(etcdreg_registry_t *reg, const char *group, etcdreg_nodes_cb cb, void *data) {
  int rv = check_usable(reg);
  if (rv) return rv;
  if (!cb) return ETCDREG_EINVAL;
  if ((rv = check_group(group))) return rv;
  reg_op_t *op = op_new(reg, data);
  if (!op) return ETCDREG_ENOMEM;
  op->nodes_cb = cb;
  op->key = etcdreg__nodes_prefix(reg->base, group);
  etcdreg_range_opts_t ro = {.prefix = 1, .timeout_ms = reg->timeout_ms};
  rv = op->key ? etcdreg_range(reg->client, op->key, strlen(op->key), &ro, on_nodes_list, op, NULL) : ETCDREG_ENOMEM;
  if (rv) {
    op->nodes_cb = NULL;
    op_free(op);
  }
  return rv;
}

/* Empty-group cleanup: one transaction, "no key in <base>/<g>/nodes/ .. its end" then delete
 * the group key. It fails while any node exists, never races, never touches a sibling. */
static void on_cleanup(etcdreg_request_t *req, int status, const etcdreg_txn_result_t *res, void *data) {
  (void)req;
  (void)res;
  reg_op_t *op = data;
  if (op->cleanup_cb) op->cleanup_cb(op->data, status);
  op_free(op);
}

void etcdreg__group_cleanup(etcdreg_registry_t *reg, const char *group, void (*cb)(void *data, int status),
                            void *data) {
  reg_op_t *op = op_new(reg, data);
  if (!op) {
    if (cb) cb(data, ETCDREG_ENOMEM);
    return;
  }
  op->cleanup_cb = cb;
  op->key = etcdreg__group_key(reg->base, group);
  op->json = etcdreg__nodes_prefix(reg->base, group);
  int rv = ETCDREG_ENOMEM;
  if (op->key && op->json) {
    etcdreg_compare_t none = {.target = ETCDREG_CMP_CREATE, .result = ETCDREG_CMP_EQUAL, .key = op->json,
                              .key_len = strlen(op->json), .prefix = 1, .number = 0};
    etcdreg_txn_op_t del = {.type = ETCDREG_OP_DELETE, .key = op->key, .key_len = strlen(op->key)};
    etcdreg_txn_t txn = {&none, 1, &del, 1, NULL, 0, reg->timeout_ms};
    rv = etcdreg_txn(reg->client, &txn, on_cleanup, op, NULL);
  }
  if (rv) {
    op->cleanup_cb = NULL;
    op_free(op);
    if (cb) cb(data, rv);
  }
}

static void on_node_cleanup_done(void *data, int status) {
  reg_op_t *op = data;
  (void)status; /* best effort: the node delete itself succeeded */
  op_status_done(op, 0, "");
}

static void on_node_deleted(etcdreg_request_t *req, int status, const etcdreg_delete_result_t *res, void *data) {
  (void)res;
  reg_op_t *op = data;
  if (status) {
    op_status_done(op, status, etcdreg_request_message(req));
    return;
  }
  etcdreg__group_cleanup(op->reg, op->group, on_node_cleanup_done, op);
}

int etcdreg_node_delete(etcdreg_registry_t *reg, const char *group, const char *id, const char *exporter_type,
                        etcdreg_status_cb cb, void *data) {
  int rv = check_usable(reg);
  if (rv) return rv;
  if (!cb) return ETCDREG_EINVAL;
  if ((rv = check_group(group))) return rv;
  etcdreg_node_t probe = {.id = id, .exporter_type = exporter_type, .port = 1, .metrics_path = "/"};
  char err[200];
  if (etcdreg__validate_node(&probe, 1000, err, sizeof(err))) {
    etcdreg__reg_set_error("%s", err);
    return ETCDREG_EINVAL;
  }
  reg_op_t *op = op_new(reg, data);
  if (!op) return ETCDREG_ENOMEM;
  op->status_cb = cb;
  op->group = strdup(group);
  op->key = etcdreg__node_key(reg->base, group, id, exporter_type);
  etcdreg_delete_opts_t o = {.timeout_ms = reg->timeout_ms};
  rv = op->group && op->key ? etcdreg_delete(reg->client, op->key, strlen(op->key), &o, on_node_deleted, op, NULL)
                            : ETCDREG_ENOMEM;
  if (rv) {
    op->status_cb = NULL;
    op_free(op);
  }
  return rv;
}
