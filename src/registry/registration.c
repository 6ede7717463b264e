/* Node registrations.
 *
 * A registration reads the group (for its common labels), takes a lease from the
 * registry's pool (registrations with the same TTL share one lease and one keepalive),
 * and writes its node in a transaction that only overwrites its own node:
 *   if create_revision(key) == 0 then put(key, node, lease) else get(key)
 * and, when the stored node is the same id and exporter type, a compare-and-swap on its
 * mod revision. A lost lease or a key deleted by someone else is repaired at once, then
 * with a jittered, clamped backoff; every failure is reported. Stopping deletes the key
 * only while it is still on this registration's lease, and the lease is revoked with its
 * last registration. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

enum { R_WAITING, R_READ_GROUP, R_WAIT_LEASE, R_PUT, R_REGISTERED, R_BACKOFF, R_STOPPING, R_DONE };
enum { SLOT_GRANTING, SLOT_ALIVE, SLOT_DEAD };

struct etcdreg_lease_slot {
  etcdreg_registry_t *reg;
  int64_t ttl_s;
  int64_t id, granted;
  int state;
  etcdreg_keepalive_t *keeper;
  size_t refs;
  etcdreg_lease_slot_t *next;
};

struct etcdreg_own_watch {
  etcdreg_registry_t *reg;
  char *group;
  char *prefix;
  etcdreg_watch_t *watch;
  size_t refs;
  int cancelled;
  etcdreg_own_watch_t *next;
};

struct etcdreg_registration {
  etcdreg_registry_t *reg;
  char *group, *key;
  etcdreg_arena_t node_arena;   /* the caller's node, copied */
  etcdreg_node_t node;
  etcdreg_arena_t stored_arena; /* the node as stored (labels merged) */
  etcdreg_node_t stored;
  char *json;
  int64_t ttl_s;
  etcdreg_register_opts_t opts;
  etcdreg_registration_cbs_t cbs;
  void *data;
  int state;
  int busy;                     /* an etcd call of this registration is in flight */
  int stop_requested;
  int end_status;
  etcdreg_lease_slot_t *slot;
  etcdreg_own_watch_t *own;
  int64_t put_rev;
  int attempt;
  etcdreg_timer_entry_t timer;
  etcdreg_registration_t *prev, *next;
};

static void attempt(etcdreg_registration_t *r);
static void put_node(etcdreg_registration_t *r);
static void do_stop(etcdreg_registration_t *r);
void etcdreg__registration_fail(etcdreg_registration_t *r, int err, const char *msg);

static uint64_t loop_now(etcdreg_registry_t *reg) { return uv_now(etcdreg_client_loop(reg->client)); }

/* ---- lease pool ---- */

static void slot_maybe_free(etcdreg_lease_slot_t *s) {
  etcdreg_registry_t *reg = s->reg;
  if (s->refs || s->state == SLOT_GRANTING || s->keeper) return;
  for (etcdreg_lease_slot_t **pp = &reg->leases; *pp; pp = &(*pp)->next) {
    if (*pp == s) {
      *pp = s->next;
      break;
    }
  }
  free(s);
  etcdreg__reg_maybe_finish_close(reg);
}

static void on_revoked(etcdreg_request_t *req, int status, const etcdreg_lease_revoke_result_t *res, void *data) {
  (void)req;
  (void)status;
  (void)res;
  etcdreg_registry_t *reg = data;
  reg->pending_ops--;
  etcdreg__reg_maybe_finish_close(reg);
}

static void slot_unref(etcdreg_lease_slot_t *s) {
  s->refs--;
  if (s->refs == 0 && s->state == SLOT_ALIVE) {
    /* The last registration on this lease: stop keeping it and revoke it. */
    etcdreg_registry_t *reg = s->reg;
    s->state = SLOT_DEAD;
    if (s->keeper) etcdreg_lease_keepalive_stop(s->keeper);
    if (etcdreg_lease_revoke(reg->client, s->id, reg->timeout_ms, on_revoked, reg, NULL) == 0) reg->pending_ops++;
  }
  slot_maybe_free(s);
}

static void slot_release(etcdreg_registration_t *r) {
  etcdreg_lease_slot_t *s = r->slot;
  if (!s) return;
  r->slot = NULL;
  slot_unref(s);
}

static void slot_ka_ended(etcdreg_keepalive_t *k, int status, const char *reason, void *data) {
  (void)k;
  etcdreg_lease_slot_t *s = data;
  etcdreg_registry_t *reg = s->reg;
  s->keeper = NULL;
  int was_alive = s->state == SLOT_ALIVE;
  s->state = SLOT_DEAD;
  if (was_alive && status == ETCDREG_ELEASELOST) {
    /* Every registration on it registers again, at once, on a new lease. */
    s->refs++; /* the loop releases every registration: keep the slot until it is done */
    etcdreg_registration_t *next;
    for (etcdreg_registration_t *r = reg->regs; r; r = next) {
      next = r->next; /* attempt() may end (free) r when it was stopped from the callback */
      if (r->slot != s || r->stop_requested) continue;
      slot_release(r);
      if (r->state == R_REGISTERED) {
        r->attempt = 1;
        if (r->cbs.error) r->cbs.error(r, ETCDREG_ELEASELOST, reason, r->attempt, 0, r->data);
        attempt(r);
      }
    }
    s->refs--;
  }
  slot_maybe_free(s);
}

static void on_granted(etcdreg_request_t *req, int status, const etcdreg_lease_grant_result_t *res, void *data) {
  etcdreg_lease_slot_t *s = data;
  etcdreg_registry_t *reg = s->reg;
  reg->pending_ops--;
  char msg[300] = "";
  if (status == 0) {
    s->id = res->id;
    s->granted = res->ttl;
    etcdreg_keepalive_cbs_t kcbs = {NULL, slot_ka_ended};
    status = etcdreg_lease_keepalive_start(reg->client, s->id, s->granted, &kcbs, s, &s->keeper);
    if (status) snprintf(msg, sizeof(msg), "failed to start keepalive: %s", etcdreg_strerror(status));
  } else {
    snprintf(msg, sizeof(msg), "failed to grant lease: %s", etcdreg_request_message(req));
  }
  s->state = status ? SLOT_DEAD : SLOT_ALIVE;
  if (status == 0 && s->refs == 0) {
    /* Everyone waiting for it stopped meanwhile: give it back at once. */
    s->refs++;
    slot_unref(s);
  }
  s->refs++; /* the loop may release every registration: keep the slot until it is done */
  etcdreg_registration_t *next;
  for (etcdreg_registration_t *r = reg->regs; r; r = next) {
    next = r->next; /* do_stop / the error callback may end (free) r */
    if (r->slot != s || r->state != R_WAIT_LEASE) continue;
    r->busy = 0;
    if (r->stop_requested) {
      do_stop(r);
    } else if (status) {
      slot_release(r);
      etcdreg__registration_fail(r, status, msg);
    } else {
      put_node(r);
    }
  }
  s->refs--;
  slot_maybe_free(s);
}

static int slot_acquire(etcdreg_registration_t *r) {
  etcdreg_registry_t *reg = r->reg;
  etcdreg_lease_slot_t *s = reg->leases;
  while (s && (s->ttl_s != r->ttl_s || s->state == SLOT_DEAD)) s = s->next;
  if (!s) {
    s = calloc(1, sizeof(*s));
    if (!s) return ETCDREG_ENOMEM;
    s->reg = reg;
    s->ttl_s = r->ttl_s;
    s->state = SLOT_GRANTING;
    int rv = etcdreg_lease_grant(reg->client, r->ttl_s, 0, reg->timeout_ms, on_granted, s, NULL);
    if (rv) {
      free(s);
      return rv;
    }
    reg->pending_ops++;
    s->next = reg->leases;
    reg->leases = s;
  }
  r->slot = s;
  s->refs++;
  return 0;
}

/* ---- failure and backoff ---- */

static uint64_t backoff_ms(etcdreg_registration_t *r) {
  uint64_t lo = r->opts.backoff_min_ms ? r->opts.backoff_min_ms : 1000;
  uint64_t hi = r->opts.backoff_max_ms ? r->opts.backoff_max_ms : 30000;
  if (hi < lo) hi = lo;
  uint64_t d = lo;
  for (int i = 1; i < r->attempt && d < hi; i++) d *= 2; /* bounded: no overflow */
  if (d > hi) d = hi;
  uint64_t spread = d / 5; /* +-20 % */
  d = d - spread + etcdreg__reg_rand(r->reg) % (2 * spread + 1);
  return d < lo ? lo : d > hi ? hi : d;
}

static void timer_fire(etcdreg_timer_entry_t *e) {
  etcdreg_registration_t *r = (etcdreg_registration_t *)((char *)e - offsetof(etcdreg_registration_t, timer));
  if (r->stop_requested) do_stop(r);
  else attempt(r);
}

void etcdreg__registration_fail(etcdreg_registration_t *r, int err, const char *msg) {
  r->busy = 0;
  if (r->stop_requested) {
    do_stop(r);
    return;
  }
  if (err == ETCDREG_ELEASENOTFOUND && r->slot) {
    /* The lease died under us: drop it so the next attempt takes a new one. */
    r->slot->state = SLOT_DEAD;
    if (r->slot->keeper) etcdreg_lease_keepalive_stop(r->slot->keeper);
    slot_release(r);
  }
  r->attempt++;
  uint64_t delay = (err == ETCDREG_ELEASENOTFOUND && r->attempt == 1) ? 0 : backoff_ms(r);
  r->state = R_BACKOFF;
  if (r->cbs.error) r->cbs.error(r, err, msg, r->attempt, delay, r->data);
  if (r->stop_requested) { /* stopped from inside the callback */
    do_stop(r);
    return;
  }
  etcdreg_timerq_add(&r->reg->timers, &r->timer, loop_now(r->reg) + delay);
}

/* ---- the attempt ---- */

static void registered(etcdreg_registration_t *r, int64_t rev) {
  r->busy = 0;
  if (r->stop_requested) {
    do_stop(r);
    return;
  }
  r->state = R_REGISTERED;
  r->put_rev = rev;
  r->attempt = 0;
  if (r->cbs.registered) r->cbs.registered(r, &r->stored, (uint64_t)(r->slot ? r->slot->granted : r->ttl_s) * 1000, r->data);
}

static void on_cas(etcdreg_request_t *req, int status, const etcdreg_txn_result_t *res, void *data) {
  etcdreg_registration_t *r = data;
  if (status) etcdreg__registration_fail(r, status, etcdreg_request_message(req));
  else if (res->succeeded) registered(r, res->header.revision);
  else etcdreg__registration_fail(r, ETCDREG_ECONFLICT, "node changed while it was being registered");
}

static void on_put(etcdreg_request_t *req, int status, const etcdreg_txn_result_t *res, void *data) {
  etcdreg_registration_t *r = data;
  if (status) {
    etcdreg__registration_fail(r, status, etcdreg_request_message(req));
    return;
  }
  if (res->succeeded) {
    registered(r, res->header.revision);
    return;
  }
  if (res->response_count != 1 || res->responses[0].u.range.kv_count != 1) {
    put_node(r); /* deleted meanwhile: try again */
    return;
  }
  const etcdreg_kv_t *kv = &res->responses[0].u.range.kvs[0];
  etcdreg_arena_t a;
  etcdreg_arena_init(&a);
  etcdreg_node_t other;
  char err[200];
  int same = etcdreg__node_decode(&a, (const char *)kv->value, kv->value_len, &other, err, sizeof(err)) == 0 &&
             strcmp(other.id ? other.id : "", r->node.id) == 0 &&
             strcmp(other.exporter_type ? other.exporter_type : "", r->node.exporter_type) == 0;
  if (!same) {
    char msg[400];
    snprintf(msg, sizeof(msg), "node key %s is held by another node (id \"%s\", exporter type \"%s\")", r->key,
             other.id ? other.id : "?", other.exporter_type ? other.exporter_type : "?");
    etcdreg_arena_free(&a);
    etcdreg__registration_fail(r, ETCDREG_EEXIST, msg);
    return;
  }
  etcdreg_arena_free(&a);
  if (!r->slot || r->slot->state != SLOT_ALIVE) { /* the lease died meanwhile */
    r->busy = 0;
    attempt(r);
    return;
  }
  /* Our own node (an earlier run, or our previous lease): replace it if unchanged since read. */
  size_t klen = strlen(r->key);
  etcdreg_compare_t cmp = {.target = ETCDREG_CMP_MOD, .result = ETCDREG_CMP_EQUAL, .key = r->key, .key_len = klen, .number = kv->mod_revision};
  etcdreg_put_opts_t po = {.lease = r->slot->id};
  etcdreg_txn_op_t put = {.type = ETCDREG_OP_PUT, .key = r->key, .key_len = klen, .value = r->json, .value_len = strlen(r->json), .put = &po};
  etcdreg_txn_t txn = {&cmp, 1, &put, 1, NULL, 0, r->reg->timeout_ms};
  int rv = etcdreg_txn(r->reg->client, &txn, on_cas, r, NULL);
  if (rv) etcdreg__registration_fail(r, rv, "could not start the transaction");
}

static void put_node(etcdreg_registration_t *r) {
  if (r->stop_requested) {
    do_stop(r);
    return;
  }
  if (!r->slot || r->slot->state != SLOT_ALIVE) {
    attempt(r);
    return;
  }
  r->state = R_PUT;
  r->busy = 1;
  size_t klen = strlen(r->key);
  etcdreg_compare_t cmp = {.target = ETCDREG_CMP_CREATE, .result = ETCDREG_CMP_EQUAL, .key = r->key, .key_len = klen, .number = 0};
  etcdreg_put_opts_t po = {.lease = r->slot->id};
  etcdreg_txn_op_t put = {.type = ETCDREG_OP_PUT, .key = r->key, .key_len = klen, .value = r->json, .value_len = strlen(r->json), .put = &po};
  etcdreg_txn_op_t get = {.type = ETCDREG_OP_RANGE, .key = r->key, .key_len = klen};
  etcdreg_txn_t txn = {&cmp, 1, &put, 1, &get, 1, r->reg->timeout_ms};
  int rv = etcdreg_txn(r->reg->client, &txn, on_put, r, NULL);
  if (rv) etcdreg__registration_fail(r, rv, "could not start the transaction");
}

static void on_group_read(etcdreg_request_t *req, int status, const etcdreg_range_result_t *res, void *data) {
  etcdreg_registration_t *r = data;
  if (status) {
    etcdreg__registration_fail(r, status, etcdreg_request_message(req));
    return;
  }
  if (r->stop_requested) {
    r->busy = 0;
    do_stop(r);
    return;
  }
  /* Common labels of the group, if it exists and decodes; node labels win. */
  etcdreg_arena_t ga;
  etcdreg_arena_init(&ga);
  etcdreg_group_t g;
  memset(&g, 0, sizeof(g));
  char err[200];
  if (res->kv_count != 1 || etcdreg__group_decode(&ga, (const char *)res->kvs[0].value, res->kvs[0].value_len, &g, err, sizeof(err)))
    memset(&g, 0, sizeof(g));
  etcdreg_arena_free(&r->stored_arena);
  etcdreg_arena_init(&r->stored_arena);
  r->stored = r->node;
  etcdreg_label_t *merged = NULL;
  size_t merged_n = 0;
  int rv = etcdreg__labels_merge(&r->stored_arena, r->node.labels, r->node.label_count, g.spec.common_labels,
                                 g.spec.common_label_count, &merged, &merged_n);
  etcdreg_arena_free(&ga);
  r->stored.labels = merged;
  r->stored.label_count = merged_n;
  r->stored.status = "healthy";
  free(r->json);
  r->json = rv ? NULL : etcdreg__node_encode(&r->stored);
  if (!r->json) {
    etcdreg__registration_fail(r, ETCDREG_ENOMEM, "out of memory encoding the node");
    return;
  }
  if (!r->slot || r->slot->state == SLOT_DEAD) {
    slot_release(r);
    rv = slot_acquire(r);
    if (rv) {
      etcdreg__registration_fail(r, rv, "could not grant a lease");
      return;
    }
  }
  if (r->slot->state == SLOT_GRANTING) {
    r->state = R_WAIT_LEASE; /* on_granted continues */
    return;
  }
  put_node(r);
}

static void attempt(etcdreg_registration_t *r) {
  if (r->stop_requested) {
    do_stop(r);
    return;
  }
  r->state = R_READ_GROUP;
  r->busy = 1;
  char *gkey = etcdreg__group_key(r->reg->base, r->group);
  etcdreg_range_opts_t ro = {.timeout_ms = r->reg->timeout_ms};
  int rv = gkey ? etcdreg_range(r->reg->client, gkey, strlen(gkey), &ro, on_group_read, r, NULL) : ETCDREG_ENOMEM;
  free(gkey);
  if (rv) etcdreg__registration_fail(r, rv, "could not read the group");
}

/* ---- the registry's watch on its own keys ---- */

static void own_ended(etcdreg_watch_t *w, int status, int64_t cr, const char *reason, void *data);

static void own_events(etcdreg_watch_t *w, int64_t rev, const etcdreg_watch_event_t *ev, size_t n, void *data) {
  (void)w;
  (void)rev;
  etcdreg_own_watch_t *o = data;
  etcdreg_registry_t *reg = o->reg;
  for (size_t i = 0; i < n; i++) {
    if (ev[i].type != ETCDREG_EVENT_DELETE) continue;
    etcdreg_registration_t *next;
    for (etcdreg_registration_t *r = reg->regs; r; r = next) {
      next = r->next; /* put_node may end r (stopped from an error callback) */
      if (r->own != o || r->state != R_REGISTERED || r->stop_requested) continue;
      if (strlen(r->key) != ev[i].kv.key_len || memcmp(r->key, ev[i].kv.key, ev[i].kv.key_len)) continue;
      if (ev[i].kv.mod_revision <= r->put_rev) continue;
      /* Deleted behind our back (or its lease expired): put it back now. */
      put_node(r);
    }
  }
}

static int own_watch_start(etcdreg_own_watch_t *o) {
  etcdreg_watch_opts_t wo = {.prefix = 1, .no_put = 1};
  etcdreg_watch_cbs_t cbs = {.ready = NULL, .events = own_events, .ended = own_ended};
  return etcdreg_watch_start(o->reg->client, o->prefix, strlen(o->prefix), &wo, &cbs, o, &o->watch);
}

static void own_free(etcdreg_own_watch_t *o) {
  etcdreg_registry_t *reg = o->reg;
  for (etcdreg_own_watch_t **pp = &reg->own_watches; *pp; pp = &(*pp)->next) {
    if (*pp == o) {
      *pp = o->next;
      break;
    }
  }
  free(o->group);
  free(o->prefix);
  free(o);
  etcdreg__reg_maybe_finish_close(reg);
}

static void own_ended(etcdreg_watch_t *w, int status, int64_t cr, const char *reason, void *data) {
  (void)w;
  (void)cr;
  (void)reason;
  etcdreg_own_watch_t *o = data;
  o->watch = NULL;
  if (o->cancelled || status == ETCDREG_ECLOSED || o->reg->closing || o->refs == 0 || own_watch_start(o)) own_free(o);
}

static etcdreg_own_watch_t *own_acquire(etcdreg_registry_t *reg, const char *group) {
  etcdreg_own_watch_t *o = reg->own_watches;
  while (o && (o->cancelled || strcmp(o->group, group))) o = o->next;
  if (!o) {
    o = calloc(1, sizeof(*o));
    if (!o) return NULL;
    o->reg = reg;
    o->group = strdup(group);
    o->prefix = etcdreg__nodes_prefix(reg->base, group);
    if (!o->group || !o->prefix || own_watch_start(o)) {
      free(o->group);
      free(o->prefix);
      free(o);
      return NULL;
    }
    o->next = reg->own_watches;
    reg->own_watches = o;
  }
  o->refs++;
  return o;
}

static void own_release(etcdreg_own_watch_t *o) {
  if (!o || --o->refs) return;
  o->cancelled = 1;
  if (o->watch) etcdreg_watch_cancel(o->watch); /* own_ended frees it */
}

/* ---- stopping ---- */

static void end_registration(etcdreg_registration_t *r) {
  etcdreg_registry_t *reg = r->reg;
  r->state = R_DONE;
  etcdreg_timerq_remove(&reg->timers, &r->timer);
  slot_release(r);
  own_release(r->own);
  r->own = NULL;
  if (r->prev) r->prev->next = r->next;
  else reg->regs = r->next;
  if (r->next) r->next->prev = r->prev;
  reg->reg_count--;
  if (r->cbs.ended) r->cbs.ended(r, r->end_status, r->data);
  free(r->group);
  free(r->key);
  free(r->json);
  etcdreg_arena_free(&r->node_arena);
  etcdreg_arena_free(&r->stored_arena);
  free(r);
  etcdreg__reg_maybe_finish_close(reg);
}

static void on_cleanup_done(void *data, int status) {
  (void)status;
  end_registration(data);
}

static void after_deregister(etcdreg_registration_t *r) {
  if (r->opts.cleanup_empty_group && !r->reg->closing) {
    r->busy = 1;
    etcdreg__group_cleanup(r->reg, r->group, on_cleanup_done, r);
    return;
  }
  end_registration(r);
}

static void on_deregistered(etcdreg_request_t *req, int status, const etcdreg_txn_result_t *res, void *data) {
  (void)req;
  (void)status;
  (void)res;
  etcdreg_registration_t *r = data;
  r->busy = 0;
  after_deregister(r);
}

static void do_stop(etcdreg_registration_t *r) {
  if (r->busy || r->state == R_STOPPING || r->state == R_DONE) return; /* resumes when the call completes */
  r->state = R_STOPPING;
  etcdreg_timerq_remove(&r->reg->timers, &r->timer);
  if (r->slot && r->slot->state == SLOT_ALIVE && r->put_rev) {
    /* Delete the key only while it is still the node we wrote: on our lease, and not
     * rewritten since (a lease may be shared with a colliding registration). */
    size_t klen = strlen(r->key);
    etcdreg_compare_t cmp[2] = {
        {.target = ETCDREG_CMP_LEASE, .result = ETCDREG_CMP_EQUAL, .key = r->key, .key_len = klen, .number = r->slot->id},
        {.target = ETCDREG_CMP_MOD, .result = ETCDREG_CMP_EQUAL, .key = r->key, .key_len = klen, .number = r->put_rev},
    };
    etcdreg_txn_op_t del = {.type = ETCDREG_OP_DELETE, .key = r->key, .key_len = klen};
    etcdreg_txn_t txn = {cmp, 2, &del, 1, NULL, 0, r->reg->timeout_ms};
    if (etcdreg_txn(r->reg->client, &txn, on_deregistered, r, NULL) == 0) {
      r->busy = 1;
      return;
    }
  }
  after_deregister(r);
}

void etcdreg_registration_stop(etcdreg_registration_t *r) {
  if (!r || r->stop_requested) return;
  r->stop_requested = 1;
  r->end_status = ETCDREG_ECANCELED;
  if (!r->busy) {
    /* From the loop, never inside this call. */
    etcdreg_timerq_add(&r->reg->timers, &r->timer, loop_now(r->reg));
  }
}

void etcdreg__registrations_close(etcdreg_registry_t *reg) {
  for (etcdreg_registration_t *r = reg->regs; r; r = r->next) {
    if (r->stop_requested) continue;
    etcdreg_registration_stop(r);
    r->end_status = ETCDREG_ECLOSED;
  }
}

int etcdreg__registrations_idle(const etcdreg_registry_t *reg) {
  return reg->regs == NULL && reg->leases == NULL && reg->own_watches == NULL;
}

/* ---- public ---- */

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int etcdreg_register(etcdreg_registry_t *reg, const char *group, const etcdreg_node_t *node, uint64_t ttl_ms,
                     const etcdreg_register_opts_t *opts, const etcdreg_registration_cbs_t *cbs, void *data,
                     etcdreg_registration_t **out) {
  if (!reg || !node || !cbs) return ETCDREG_EINVAL;
  if (reg->closing) return ETCDREG_ECLOSED;
  char err[200];
  if (etcdreg__validate_group_name(group, err, sizeof(err)) || etcdreg__validate_node(node, ttl_ms, err, sizeof(err))) {
    etcdreg__reg_set_error("%s", err);
    return ETCDREG_EINVAL;
  }
  if (ttl_ms > (uint64_t)INT32_MAX * 1000) {
    etcdreg__reg_set_error("ttl must be at most %d s", INT32_MAX);
    return ETCDREG_EINVAL;
  }
  etcdreg_registration_t *r = calloc(1, sizeof(*r));
  if (!r) return ETCDREG_ENOMEM;
  r->reg = reg;
  etcdreg_arena_init(&r->node_arena);
  etcdreg_arena_init(&r->stored_arena);
  etcdreg_arena_t *a = &r->node_arena;
  r->node.id = etcdreg_arena_dup(a, node->id, strlen(node->id) + 1);
  r->node.exporter_type = etcdreg_arena_dup(a, node->exporter_type, strlen(node->exporter_type) + 1);
  r->node.metrics_path = etcdreg_arena_dup(a, node->metrics_path, strlen(node->metrics_path) + 1);
  r->node.port = node->port;
  r->node.status = "healthy";
  r->node.last_seen_ns = now_ns();
  etcdreg_label_t *labels = NULL;
  int rv = etcdreg__labels_sort_copy(a, node->labels, node->label_count, &labels);
  r->node.labels = labels;
  r->node.label_count = node->label_count;
  r->group = strdup(group);
  r->key = etcdreg__node_key(reg->base, group, node->id, node->exporter_type);
  r->ttl_s = (int64_t)((ttl_ms + 999) / 1000); /* rounded up to whole seconds */
  if (opts) r->opts = *opts;
  r->cbs = *cbs;
  r->data = data;
  etcdreg_timer_entry_init(&r->timer, timer_fire);
  if (rv || a->failed || !r->group || !r->key || !(r->own = own_acquire(reg, group))) {
    free(r->group);
    free(r->key);
    etcdreg_arena_free(a);
    free(r);
    return ETCDREG_ENOMEM;
  }
  r->state = R_WAITING;
  r->next = reg->regs;
  if (reg->regs) reg->regs->prev = r;
  reg->regs = r;
  reg->reg_count++;
  /* The first attempt runs from the loop. */
  etcdreg_timerq_add(&reg->timers, &r->timer, loop_now(reg));
  if (out) *out = r;
  return 0;
}
