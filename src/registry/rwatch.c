/* Registry watches: every group and node under base, one group, or one group's nodes.
 *
 * A watch reads a snapshot (one transaction, so the exact group key and the prefix are
 * read at one revision), keeps a cache of what it reported, and watches from the
 * snapshot's revision + 1 with prev_kv. Deletes carry the object as it was. When the
 * underlying watch ends because its revision was compacted (a long disconnection), the
 * snapshot is read again and the differences from the cache are reported as events, so
 * the application's view converges; then watching resumes. Plain reconnects resume
 * inside the client without loss. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

enum { RW_SERVICES, RW_GROUP, RW_NODES };

/* What was last reported for a key. */
typedef struct cache_entry {
  char *key;
  size_t key_len;
  char *value;
  size_t value_len;
  int64_t mod_revision;
  int seen; /* marks entries present in a fresh snapshot */
  struct cache_entry *next;
} cache_entry_t;

#define CACHE_BUCKETS 1024

struct etcdreg_registry_watch {
  etcdreg_registry_t *reg;
  int kind;
  char *group;
  char *prefix;      /* "<base>/", "<base>/<g>/" or "<base>/<g>/nodes/" */
  char *exact;       /* the group key (RW_GROUP) */
  etcdreg_watch_t *w_prefix, *w_exact;
  int ready_needed, ready_got, ready_fired;
  int ending, ended_fired;
  int end_status;
  char end_message[200];
  int in_snapshot;
  int resync_pending;
  int snapshots;     /* snapshots read so far: the first reports nothing */
  cache_entry_t *buckets[CACHE_BUCKETS];
  etcdreg_registry_watch_cbs_t cbs;
  void *data;
  etcdreg_timer_entry_t end_timer;
  etcdreg_registry_watch_t *prev, *next;
};

static size_t hash_key(const char *k, size_t n) {
  size_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)k[i]) * 1099511628211ULL;
  return h % CACHE_BUCKETS;
}

static cache_entry_t **cache_find(etcdreg_registry_watch_t *w, const void *key, size_t n) {
  cache_entry_t **pp = &w->buckets[hash_key(key, n)];
  while (*pp && ((*pp)->key_len != n || memcmp((*pp)->key, key, n))) pp = &(*pp)->next;
  return pp;
}

static void entry_free(cache_entry_t *e) {
  free(e->key);
  free(e->value);
  free(e);
}

static void cache_put(etcdreg_registry_watch_t *w, const etcdreg_kv_t *kv) {
  cache_entry_t **pp = cache_find(w, kv->key, kv->key_len);
  cache_entry_t *e = *pp;
  if (!e) {
    e = calloc(1, sizeof(*e));
    if (!e) return;
    e->key = malloc(kv->key_len + 1);
    if (!e->key) {
      free(e);
      return;
    }
    memcpy(e->key, kv->key, kv->key_len);
    e->key[kv->key_len] = 0;
    e->key_len = kv->key_len;
    *pp = e;
  }
  free(e->value);
  e->value = malloc(kv->value_len + 1);
  if (e->value) {
    memcpy(e->value, kv->value, kv->value_len);
    e->value[kv->value_len] = 0;
  }
  e->value_len = e->value ? kv->value_len : 0;
  e->mod_revision = kv->mod_revision;
}

static void cache_clear(etcdreg_registry_watch_t *w) {
  for (size_t b = 0; b < CACHE_BUCKETS; b++) {
    cache_entry_t *e = w->buckets[b];
    while (e) {
      cache_entry_t *next = e->next;
      entry_free(e);
      e = next;
    }
    w->buckets[b] = NULL;
  }
}

/* ---- classification and emission ---- */

/* Which group a key belongs to, and whether it is the group config or a node. */
static int classify(etcdreg_registry_watch_t *w, const uint8_t *key, size_t n, char *group, size_t glen, int *is_node) {
  const char *k = (const char *)key;
  if (w->exact && strlen(w->exact) == n && memcmp(w->exact, k, n) == 0) {
    snprintf(group, glen, "%s", w->group);
    *is_node = 0;
    return 1;
  }
  size_t plen = strlen(w->prefix);
  if (n <= plen || memcmp(k, w->prefix, plen)) return 0;
  const char *rel = k + plen;
  size_t rlen = n - plen;
  if (w->kind == RW_NODES) {
    if (memchr(rel, '/', rlen)) return 0;
    snprintf(group, glen, "%s", w->group);
    *is_node = 1;
    return 1;
  }
  if (w->kind == RW_GROUP) { /* "nodes/<x>" */
    if (rlen <= 6 || memcmp(rel, "nodes/", 6) || memchr(rel + 6, '/', rlen - 6)) return 0;
    snprintf(group, glen, "%s", w->group);
    *is_node = 1;
    return 1;
  }
  /* services: "<g>" or "<g>/nodes/<x>" */
  const char *slash = memchr(rel, '/', rlen);
  size_t gl = slash ? (size_t)(slash - rel) : rlen;
  if (gl == 0 || gl >= glen) return 0;
  memcpy(group, rel, gl);
  group[gl] = 0;
  char err[100];
  if (etcdreg__validate_group_name(group, err, sizeof(err))) return 0;
  if (!slash) {
    *is_node = 0;
    return 1;
  }
  const char *rest = slash + 1;
  size_t restlen = rlen - gl - 1;
  if (restlen <= 6 || memcmp(rest, "nodes/", 6) || memchr(rest + 6, '/', restlen - 6)) return 0;
  *is_node = 1;
  return 1;
}

static void emit(etcdreg_registry_watch_t *w, etcdreg_reg_event_type_t type, const uint8_t *key, size_t key_len,
                 const char *value, size_t value_len, int64_t rev) {
  if (w->ending || !w->cbs.event) return;
  char group[80];
  int is_node = 0;
  if (!classify(w, key, key_len, group, sizeof(group), &is_node)) return;
  etcdreg_arena_t a;
  etcdreg_arena_init(&a);
  etcdreg_event_t ev;
  memset(&ev, 0, sizeof(ev));
  ev.type = type;
  ev.group = group;
  ev.revision = rev;
  etcdreg_node_t node;
  etcdreg_group_t g;
  char err[200];
  int ok;
  if (is_node) {
    ok = value && etcdreg__node_decode(&a, value, value_len, &node, err, sizeof(err)) == 0;
    ev.node = &node;
  } else {
    ok = value && etcdreg__group_decode(&a, value, value_len, &g, err, sizeof(err)) == 0;
    if (ok) g.mod_revision = rev;
    ev.group_config = &g;
  }
  if (ok) w->cbs.event(w, &ev, w->data); /* values that do not decode are skipped */
  etcdreg_arena_free(&a);
}

/* ---- lifecycle ---- */

static void rw_end_fire(etcdreg_timer_entry_t *e);

static void rw_maybe_free(etcdreg_registry_watch_t *w) {
  if (!w->ended_fired || w->w_prefix || w->w_exact || w->in_snapshot || etcdreg_timer_entry_active(&w->end_timer)) return;
  etcdreg_registry_t *reg = w->reg;
  if (w->prev) w->prev->next = w->next;
  else reg->watches = w->next;
  if (w->next) w->next->prev = w->prev;
  cache_clear(w);
  free(w->group);
  free(w->prefix);
  free(w->exact);
  free(w);
  etcdreg__reg_maybe_finish_close(reg);
}

static void rw_end(etcdreg_registry_watch_t *w, int status, const char *msg) {
  if (w->ending) return;
  w->ending = 1;
  w->end_status = status;
  snprintf(w->end_message, sizeof(w->end_message), "%s", msg ? msg : "");
  if (w->w_prefix) etcdreg_watch_cancel(w->w_prefix);
  if (w->w_exact) etcdreg_watch_cancel(w->w_exact);
  etcdreg_timerq_add(&w->reg->timers, &w->end_timer, uv_now(etcdreg_client_loop(w->reg->client)));
}

static void rw_end_fire(etcdreg_timer_entry_t *e) {
  etcdreg_registry_watch_t *w = (etcdreg_registry_watch_t *)((char *)e - offsetof(etcdreg_registry_watch_t, end_timer));
  w->ended_fired = 1;
  if (w->cbs.ended) w->cbs.ended(w, w->end_status, w->end_message, w->data);
  rw_maybe_free(w);
}

static int start_snapshot(etcdreg_registry_watch_t *w);

static void on_ready(etcdreg_watch_t *uw, int64_t rev, void *data) {
  (void)uw;
  (void)rev;
  etcdreg_registry_watch_t *w = data;
  if (++w->ready_got >= w->ready_needed && !w->ready_fired && !w->ending) {
    w->ready_fired = 1;
    if (w->cbs.ready) w->cbs.ready(w, w->data);
  }
}

static void on_events(etcdreg_watch_t *uw, int64_t rev, const etcdreg_watch_event_t *ev, size_t n, void *data) {
  (void)uw;
  (void)rev;
  etcdreg_registry_watch_t *w = data;
  for (size_t i = 0; i < n && !w->ending; i++) {
    const etcdreg_kv_t *kv = &ev[i].kv;
    if (ev[i].type == ETCDREG_EVENT_PUT) {
      etcdreg_reg_event_type_t t = kv->create_revision == kv->mod_revision ? ETCDREG_REG_EVENT_CREATE : ETCDREG_REG_EVENT_UPDATE;
      cache_put(w, kv);
      emit(w, t, kv->key, kv->key_len, (const char *)kv->value, kv->value_len, kv->mod_revision);
    } else {
      /* The object as it was: prev_kv, else what we last reported. */
      cache_entry_t **pp = cache_find(w, kv->key, kv->key_len);
      const char *val = ev[i].prev_kv ? (const char *)ev[i].prev_kv->value : (*pp ? (*pp)->value : NULL);
      size_t vlen = ev[i].prev_kv ? ev[i].prev_kv->value_len : (*pp ? (*pp)->value_len : 0);
      emit(w, ETCDREG_REG_EVENT_DELETE, kv->key, kv->key_len, val, vlen, kv->mod_revision);
      if (*pp) {
        cache_entry_t *e = *pp;
        *pp = e->next;
        entry_free(e);
      }
    }
  }
}

static void on_uw_ended(etcdreg_watch_t *uw, int status, int64_t compact_rev, const char *reason, void *data) {
  (void)compact_rev;
  etcdreg_registry_watch_t *w = data;
  if (uw == w->w_prefix) w->w_prefix = NULL;
  if (uw == w->w_exact) w->w_exact = NULL;
  if (!w->ending && status == ETCDREG_ECOMPACTED) {
    /* Fell behind the compaction: re-read and report the differences, then resume. */
    w->resync_pending = 1;
    if (w->w_prefix) etcdreg_watch_cancel(w->w_prefix);
    if (w->w_exact) etcdreg_watch_cancel(w->w_exact);
  } else if (!w->ending && status != ETCDREG_ECANCELED) {
    rw_end(w, status, reason);
  }
  if (!w->ending && w->resync_pending && !w->w_prefix && !w->w_exact && !w->in_snapshot) {
    w->resync_pending = 0;
    int rv = start_snapshot(w);
    if (rv) rw_end(w, rv, "could not re-read after a compaction");
  }
  rw_maybe_free(w);
}

static int start_watches(etcdreg_registry_watch_t *w, int64_t from) {
  etcdreg_watch_cbs_t cbs = {.ready = on_ready, .events = on_events, .ended = on_uw_ended};
  etcdreg_watch_opts_t po = {.prefix = 1, .prev_kv = 1, .start_revision = from};
  int rv = etcdreg_watch_start(w->reg->client, w->prefix, strlen(w->prefix), &po, &cbs, w, &w->w_prefix);
  if (rv) return rv;
  if (w->exact) {
    etcdreg_watch_opts_t eo = {.prev_kv = 1, .start_revision = from};
    rv = etcdreg_watch_start(w->reg->client, w->exact, strlen(w->exact), &eo, &cbs, w, &w->w_exact);
  }
  return rv;
}

static void on_snapshot(etcdreg_request_t *req, int status, const etcdreg_txn_result_t *res, void *data) {
  etcdreg_registry_watch_t *w = data;
  w->in_snapshot = 0;
  if (w->ending) {
    rw_maybe_free(w);
    return;
  }
  if (status) {
    rw_end(w, status, etcdreg_request_message(req));
    return;
  }
  int first = w->snapshots++ == 0;
  /* Diff against the cache (empty the first time: nothing is reported then). */
  for (size_t b = 0; b < CACHE_BUCKETS; b++)
    for (cache_entry_t *e = w->buckets[b]; e; e = e->next) e->seen = 0;
  for (size_t i = 0; i < res->response_count; i++) {
    const etcdreg_range_result_t *rr = &res->responses[i].u.range;
    for (size_t j = 0; j < rr->kv_count; j++) {
      const etcdreg_kv_t *kv = &rr->kvs[j];
      cache_entry_t **pp = cache_find(w, kv->key, kv->key_len);
      int known = *pp != NULL;
      int changed = known && (*pp)->mod_revision != kv->mod_revision;
      cache_put(w, kv);
      cache_entry_t *e = *cache_find(w, kv->key, kv->key_len);
      if (e) e->seen = 1;
      if (!first && (!known || changed))
        emit(w, known ? ETCDREG_REG_EVENT_UPDATE : ETCDREG_REG_EVENT_CREATE, kv->key, kv->key_len,
             (const char *)kv->value, kv->value_len, kv->mod_revision);
    }
  }
  for (size_t b = 0; b < CACHE_BUCKETS; b++) {
    cache_entry_t **pp = &w->buckets[b];
    while (*pp) {
      cache_entry_t *e = *pp;
      if (e->seen) {
        pp = &e->next;
        continue;
      }
      if (!first)
        emit(w, ETCDREG_REG_EVENT_DELETE, (const uint8_t *)e->key, e->key_len, e->value, e->value_len, res->header.revision);
      *pp = e->next;
      entry_free(e);
    }
  }
  int rv = start_watches(w, res->header.revision + 1);
  if (rv) rw_end(w, rv, "could not start watching");
}

static int start_snapshot(etcdreg_registry_watch_t *w) {
  etcdreg_range_opts_t all = {.prefix = 1};
  etcdreg_txn_op_t ops[2] = {
      {.type = ETCDREG_OP_RANGE, .key = w->prefix, .key_len = strlen(w->prefix), .range = &all},
      {.type = ETCDREG_OP_RANGE, .key = w->exact, .key_len = w->exact ? strlen(w->exact) : 0},
  };
  etcdreg_txn_t txn = {NULL, 0, ops, w->exact ? 2 : 1, NULL, 0, w->reg->timeout_ms};
  int rv = etcdreg_txn(w->reg->client, &txn, on_snapshot, w, NULL);
  if (rv == 0) w->in_snapshot = 1;
  return rv;
}

static int rw_start(etcdreg_registry_t *reg, int kind, const char *group, const etcdreg_registry_watch_cbs_t *cbs,
                    void *data, etcdreg_registry_watch_t **out) {
  if (!reg || !cbs) return ETCDREG_EINVAL;
  if (reg->closing) return ETCDREG_ECLOSED;
  char err[200];
  if (kind != RW_SERVICES && etcdreg__validate_group_name(group, err, sizeof(err))) {
    etcdreg__reg_set_error("%s", err);
    return ETCDREG_EINVAL;
  }
  etcdreg_registry_watch_t *w = calloc(1, sizeof(*w));
  if (!w) return ETCDREG_ENOMEM;
  w->reg = reg;
  w->kind = kind;
  w->cbs = *cbs;
  w->data = data;
  etcdreg_timer_entry_init(&w->end_timer, rw_end_fire);
  if (kind == RW_SERVICES) {
    w->prefix = etcdreg__base_prefix(reg->base);
  } else {
    w->group = strdup(group);
    if (kind == RW_GROUP) {
      w->prefix = etcdreg__group_prefix(reg->base, group);
      w->exact = etcdreg__group_key(reg->base, group);
    } else {
      w->prefix = etcdreg__nodes_prefix(reg->base, group);
    }
  }
  w->ready_needed = w->exact ? 2 : 1;
  int rv = (!w->prefix || (kind != RW_SERVICES && !w->group) || (kind == RW_GROUP && !w->exact)) ? ETCDREG_ENOMEM
                                                                                                 : start_snapshot(w);
  if (rv) {
    free(w->group);
    free(w->prefix);
    free(w->exact);
    free(w);
    return rv;
  }
  w->next = reg->watches;
  if (reg->watches) reg->watches->prev = w;
  reg->watches = w;
  if (out) *out = w;
  return 0;
}

int etcdreg_registry_watch_services(etcdreg_registry_t *reg, const etcdreg_registry_watch_cbs_t *cbs, void *data,
                                    etcdreg_registry_watch_t **out) {
  return rw_start(reg, RW_SERVICES, NULL, cbs, data, out);
}

int etcdreg_registry_watch_group(etcdreg_registry_t *reg, const char *group, const etcdreg_registry_watch_cbs_t *cbs,
                                 void *data, etcdreg_registry_watch_t **out) {
  return rw_start(reg, RW_GROUP, group, cbs, data, out);
}

int etcdreg_registry_watch_group_nodes(etcdreg_registry_t *reg, const char *group,
                                       const etcdreg_registry_watch_cbs_t *cbs, void *data,
                                       etcdreg_registry_watch_t **out) {
  return rw_start(reg, RW_NODES, group, cbs, data, out);
}

void etcdreg_registry_watch_cancel(etcdreg_registry_watch_t *w) {
  if (!w || w->ending) return;
  rw_end(w, ETCDREG_ECANCELED, "cancelled by the application");
}

void etcdreg__rwatches_close(etcdreg_registry_t *reg) {
  for (etcdreg_registry_watch_t *w = reg->watches; w; w = w->next) rw_end(w, ETCDREG_ECLOSED, "registry closed");
}

int etcdreg__rwatches_idle(const etcdreg_registry_t *reg) { return reg->watches == NULL; }
