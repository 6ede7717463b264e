/* Watches: every watcher of a client on one gRPC Watch stream, resumed without loss.
 *
 * Creates are pipelined with client-chosen watch ids (etcd 3.4+); answers to creates come
 * in order, so a failed create (watch_id -1) belongs to the oldest create still awaiting
 * its answer. Each watcher keeps next_rev, the first revision it has not delivered: after
 * events it is the last event's mod_revision + 1, after a per-watcher progress
 * notification header.revision + 1. When the stream or the connection fails, every
 * watcher is created again on a new stream from next_rev; events below next_rev are
 * dropped, so none is delivered twice. Fragments are joined before delivery. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcdreg/watch.h"
#include "internal.h"

struct etcdreg_watch {
  etcdreg_client_t *client;
  int64_t id;
  uint8_t *key, *end;
  size_t key_len, end_len;
  int prev_kv, no_put, no_delete, progress_notify, fragment;
  int64_t next_rev;     /* 0: "from now", until the server confirmed the first create */
  int ready_fired;
  int ended;
  int end_status;
  int64_t compact_rev;
  char *end_reason;
  etcdreg_watch_cbs_t cbs;
  void *data;
  Etcdserverpb__WatchResponse **frags; /* fragments of one revision being joined */
  size_t frag_count;
  etcdreg_watch_t *prev, *next;        /* live watchers */
  etcdreg_watch_t *end_next;           /* ended, callback due */
};

#define WATCH_PATH "/etcdserverpb.Watch/Watch"

static void watch_dispatch_fire(etcdreg_timer_entry_t *e);
static void watch_retry_fire(etcdreg_timer_entry_t *e);

static etcdreg_watch_mgr_t *mgr_of(etcdreg_client_t *c) { return &c->watch; }

void etcdreg__watch_init(etcdreg_client_t *c) {
  etcdreg_watch_mgr_t *m = mgr_of(c);
  memset(m, 0, sizeof(*m));
  etcdreg_idmap_init(&m->by_id);
  m->next_id = 1;
  etcdreg_timer_entry_init(&m->dispatch, watch_dispatch_fire);
  etcdreg_timer_entry_init(&m->retry, watch_retry_fire);
}

int etcdreg__watch_busy(const etcdreg_client_t *c) {
  const etcdreg_watch_mgr_t *m = &c->watch;
  return etcdreg_timer_entry_active(&m->dispatch) || m->ended_head != NULL;
}

/* ---- pending creates: a ring of ids ---- */

static int pending_push(etcdreg_watch_mgr_t *m, int64_t id) {
  if (m->pending_len == m->pending_cap) {
    size_t cap = m->pending_cap ? m->pending_cap * 2 : 64;
    int64_t *ring = malloc(cap * sizeof(*ring));
    if (!ring) return ETCDREG_ENOMEM;
    for (size_t i = 0; i < m->pending_len; i++) ring[i] = m->pending[(m->pending_head + i) % m->pending_cap];
    free(m->pending);
    m->pending = ring;
    m->pending_cap = cap;
    m->pending_head = 0;
  }
  m->pending[(m->pending_head + m->pending_len) % m->pending_cap] = id;
  m->pending_len++;
  return 0;
}

static int64_t pending_pop(etcdreg_watch_mgr_t *m) {
  if (!m->pending_len) return 0;
  int64_t id = m->pending[m->pending_head];
  m->pending_head = (m->pending_head + 1) % m->pending_cap;
  m->pending_len--;
  return id;
}

/* ---- ending ---- */

static void free_frags(etcdreg_watch_t *w) {
  for (size_t i = 0; i < w->frag_count; i++) protobuf_c_message_free_unpacked(&w->frags[i]->base, NULL);
  free(w->frags);
  w->frags = NULL;
  w->frag_count = 0;
}

static void watch_end(etcdreg_watch_t *w, int status, int64_t compact_rev, const char *reason) {
  if (w->ended) return;
  etcdreg_client_t *c = w->client;
  etcdreg_watch_mgr_t *m = mgr_of(c);
  w->ended = 1;
  w->end_status = status;
  w->compact_rev = compact_rev;
  w->end_reason = strdup(reason ? reason : "");
  etcdreg_idmap_remove(&m->by_id, w->id);
  if (w->prev) w->prev->next = w->next;
  else m->all = w->next;
  if (w->next) w->next->prev = w->prev;
  m->count--;
  free_frags(w);
  w->end_next = NULL;
  if (m->ended_tail) m->ended_tail->end_next = w;
  else m->ended_head = w;
  m->ended_tail = w;
  if (!etcdreg_timer_entry_active(&m->dispatch)) etcdreg_timerq_add(&c->timers, &m->dispatch, uv_now(c->loop));
}

static void watch_free(etcdreg_watch_t *w) {
  free(w->key);
  free(w->end);
  free(w->end_reason);
  free(w);
}

static void watch_dispatch_fire(etcdreg_timer_entry_t *e) {
  etcdreg_watch_mgr_t *m = (etcdreg_watch_mgr_t *)((char *)e - offsetof(etcdreg_watch_mgr_t, dispatch));
  etcdreg_client_t *c = (etcdreg_client_t *)((char *)m - offsetof(etcdreg_client_t, watch));
  while (m->ended_head) {
    etcdreg_watch_t *w = m->ended_head;
    m->ended_head = w->end_next;
    if (!m->ended_head) m->ended_tail = NULL;
    if (w->cbs.ended) w->cbs.ended(w, w->end_status, w->compact_rev, w->end_reason, w->data);
    watch_free(w);
  }
  /* With no watcher left, the stream goes too (it would only hold the connection). */
  if (m->count == 0 && m->call) {
    m->restarting = 1;
    etcdreg_grpc_call_cancel(m->call, ETCDREG_ECANCELED, "no watchers left");
  }
  etcdreg__client_maybe_close_timers(c);
}

/* ---- sending ---- */

static int send_request(etcdreg_watch_mgr_t *m, const Etcdserverpb__WatchRequest *req) {
  size_t size = protobuf_c_message_get_packed_size(&req->base);
  etcdreg_grpc_outmsg_t *out = etcdreg_grpc_outmsg_new(size);
  if (!out) return ETCDREG_ENOMEM;
  protobuf_c_message_pack(&req->base, etcdreg_grpc_outmsg_payload(out));
  return etcdreg_grpc_call_send(m->call, out, 0);
}

static int send_create(etcdreg_watch_mgr_t *m, etcdreg_watch_t *w) {
  Etcdserverpb__WatchCreateRequest cr;
  etcdserverpb__watch_create_request__init(&cr);
  cr.key.data = w->key;
  cr.key.len = w->key_len;
  cr.range_end.data = w->end;
  cr.range_end.len = w->end_len;
  cr.start_revision = w->next_rev;
  cr.progress_notify = w->progress_notify != 0;
  Etcdserverpb__WatchCreateRequest__FilterType filters[2];
  size_t nf = 0;
  if (w->no_put) filters[nf++] = ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NOPUT;
  if (w->no_delete) filters[nf++] = ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NODELETE;
  cr.filters = filters;
  cr.n_filters = nf;
  cr.prev_kv = w->prev_kv != 0;
  cr.watch_id = w->id;
  cr.fragment = w->fragment != 0;
  Etcdserverpb__WatchRequest req;
  etcdserverpb__watch_request__init(&req);
  req.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
  req.create_request = &cr;
  int rv = pending_push(m, w->id);
  if (rv) return rv;
  return send_request(m, &req);
}

static void send_cancel(etcdreg_watch_mgr_t *m, int64_t id) {
  Etcdserverpb__WatchCancelRequest cr;
  etcdserverpb__watch_cancel_request__init(&cr);
  cr.watch_id = id;
  Etcdserverpb__WatchRequest req;
  etcdserverpb__watch_request__init(&req);
  req.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CANCEL_REQUEST;
  req.cancel_request = &cr;
  send_request(m, &req);
}

/* ---- receiving ---- */

static int is_auth_reason(const char *r) {
  return r && (strstr(r, "invalid auth token") || strstr(r, "auth store is old") ||
               strstr(r, "user name is empty"));
}


/* Delivers the events of `parts` (fragments joined) that are not older than next_rev. */
static void deliver(etcdreg_watch_t *w, Etcdserverpb__WatchResponse **parts, size_t nparts, int64_t header_rev) {
  size_t total = 0;
  for (size_t i = 0; i < nparts; i++) total += parts[i]->n_events;
  if (total == 0) return;
  etcdreg_arena_t a;
  etcdreg_arena_init(&a);
  etcdreg_watch_event_t *evs = ETCDREG_ARENA_NEW(&a, etcdreg_watch_event_t, total);
  etcdreg_kv_t *prevs = ETCDREG_ARENA_NEW(&a, etcdreg_kv_t, total);
  if (!evs || !prevs) {
    etcdreg_arena_free(&a);
    watch_end(w, ETCDREG_ENOMEM, 0, "out of memory delivering events");
    return;
  }
  size_t n = 0;
  int64_t last = 0;
  for (size_t i = 0; i < nparts; i++) {
    for (size_t j = 0; j < parts[i]->n_events; j++) {
      const Mvccpb__Event *ev = parts[i]->events[j];
      if (!ev->kv || ev->kv->mod_revision < w->next_rev) continue; /* already delivered */
      evs[n].type = ev->type == MVCCPB__EVENT__EVENT_TYPE__DELETE ? ETCDREG_EVENT_DELETE : ETCDREG_EVENT_PUT;
      etcdreg__kv_from_pb(&evs[n].kv, ev->kv);
      evs[n].prev_kv = NULL;
      if (ev->prev_kv) {
        etcdreg__kv_from_pb(&prevs[n], ev->prev_kv);
        evs[n].prev_kv = &prevs[n];
      }
      last = ev->kv->mod_revision;
      n++;
    }
  }
  if (n) {
    w->next_rev = last + 1;
    if (w->cbs.events) w->cbs.events(w, header_rev, evs, n, w->data);
  }
  etcdreg_arena_free(&a);
}

void etcdreg__watch_restart(etcdreg_client_t *c, const char *why);

static void restart_stream(etcdreg_client_t *c, const char *why) {
  etcdreg_watch_mgr_t *m = mgr_of(c);
  if (!m->call) return;
  m->restarting = 1;
  etcdreg__log(c, ETCDREG_LOG_INFO, "watch stream restarted: %s", why);
  etcdreg_grpc_call_cancel(m->call, ETCDREG_ECANCELED, why);
}

static void handle_response(etcdreg_client_t *c, Etcdserverpb__WatchResponse *r, int *keep) {
  etcdreg_watch_mgr_t *m = mgr_of(c);
  int64_t header_rev = r->header ? r->header->revision : 0;
  if (r->created) {
    int64_t id = r->watch_id;
    if (id == -1 || r->canceled) {
      /* A failed create: it answers the oldest create still waiting. */
      int64_t failed = id != -1 ? id : pending_pop(m);
      if (id != -1) pending_pop(m);
      etcdreg_watch_t *w = etcdreg_idmap_get(&m->by_id, failed);
      const char *reason = r->cancel_reason ? r->cancel_reason : "";
      if (is_auth_reason(reason) && c->username) {
        /* The stream's token expired: refresh it and move every watcher to a new stream. */
        etcdreg__auth_invalidate(c, c->token_gen);
        restart_stream(c, "watch create refused with a stale auth token");
        return;
      }
      if (!w) return;
      if (strstr(reason, "permission denied")) watch_end(w, ETCDREG_EPERM, 0, reason);
      else if (r->compact_revision) watch_end(w, ETCDREG_ECOMPACTED, r->compact_revision, reason);
      else watch_end(w, ETCDREG_ECANCELED, 0, reason[0] ? reason : "watch create refused by the server");
      return;
    }
    /* Answers come in order: everything before this id was answered too. */
    while (m->pending_len && pending_pop(m) != id) {
    }
    etcdreg_watch_t *w = etcdreg_idmap_get(&m->by_id, id);
    if (!w) return;
    m->failures = 0;
    etcdreg__client_note_success(c);
    if (w->next_rev == 0) w->next_rev = header_rev + 1;
    if (!w->ready_fired) {
      w->ready_fired = 1;
      if (w->cbs.ready) w->cbs.ready(w, header_rev, w->data);
    }
    return;
  }
  etcdreg_watch_t *w = etcdreg_idmap_get(&m->by_id, r->watch_id);
  if (r->canceled) {
    if (!w) return;
    const char *reason = r->cancel_reason ? r->cancel_reason : "";
    if (r->compact_revision) {
      watch_end(w, ETCDREG_ECOMPACTED, r->compact_revision, reason[0] ? reason : "required revision has been compacted");
    } else if (strstr(reason, "no leader")) {
      /* This member lost its leader: tell the watchers, resume on another member. */
      for (etcdreg_watch_t *x = m->all; x; x = x->next)
        if (x->cbs.interrupted) x->cbs.interrupted(x, ETCDREG_ENOLEADER, reason, x->data);
      etcdreg__client_drop_connection(c, ETCDREG_ENOLEADER, reason);
    } else {
      watch_end(w, ETCDREG_ECANCELED, 0, reason[0] ? reason : "watch cancelled by the server");
    }
    return;
  }
  if (!w) return; /* cancelled here, or a broadcast progress notification (id -1) */
  if (r->fragment) {
    Etcdserverpb__WatchResponse **frags = realloc(w->frags, (w->frag_count + 1) * sizeof(*frags));
    if (!frags) {
      watch_end(w, ETCDREG_ENOMEM, 0, "out of memory joining fragments");
      return;
    }
    w->frags = frags;
    w->frags[w->frag_count++] = r;
    *keep = 1;
    return;
  }
  if (r->n_events == 0 && w->frag_count == 0) {
    /* Per-watcher progress: everything up to header.revision has been delivered. */
    if (header_rev + 1 > w->next_rev) w->next_rev = header_rev + 1;
    return;
  }
  if (w->frag_count) {
    Etcdserverpb__WatchResponse **frags = realloc(w->frags, (w->frag_count + 1) * sizeof(*frags));
    if (!frags) {
      watch_end(w, ETCDREG_ENOMEM, 0, "out of memory joining fragments");
      return;
    }
    w->frags = frags;
    w->frags[w->frag_count++] = r;
    *keep = 1;
    deliver(w, w->frags, w->frag_count, header_rev);
    free_frags(w);
    return;
  }
  deliver(w, &r, 1, header_rev);
}

static int watch_on_message(etcdreg_grpc_call_t *call, const uint8_t *msg, size_t len, void *data) {
  (void)call;
  etcdreg_client_t *c = data;
  Etcdserverpb__WatchResponse *r = etcdserverpb__watch_response__unpack(NULL, len, msg);
  if (!r) return ETCDREG_EPROTO;
  int keep = 0;
  handle_response(c, r, &keep);
  if (!keep) etcdserverpb__watch_response__free_unpacked(r, NULL);
  return 0;
}

static void watch_on_close(etcdreg_grpc_call_t *call, const etcdreg_grpc_status_t *st, void *data) {
  (void)call;
  etcdreg_client_t *c = data;
  etcdreg_watch_mgr_t *m = mgr_of(c);
  m->call = NULL;
  m->pending_len = 0;
  for (etcdreg_watch_t *w = m->all; w; w = w->next) free_frags(w);
  int restarting = m->restarting;
  m->restarting = 0;
  if (c->closing || m->count == 0) return;
  int status = st->local ? st->local : etcdreg__map_grpc_status(st->code, st->message);
  if (restarting) {
    etcdreg__watch_kick(c);
    return;
  }
  etcdreg__log(c, ETCDREG_LOG_WARN, "watch stream ended: %s (%s); resuming %zu watchers",
               etcdreg_strerror(status), st->message, m->count);
  int told = status == ETCDREG_ENOLEADER ? ETCDREG_ENOLEADER : ETCDREG_EUNAVAILABLE;
  etcdreg_watch_t *next;
  for (etcdreg_watch_t *x = m->all; x; x = next) {
    next = x->next;
    if (x->cbs.interrupted) x->cbs.interrupted(x, told, st->message, x->data);
  }
  if (status == ETCDREG_EINVALIDTOKEN) etcdreg__auth_invalidate(c, c->token_gen);
  if (status == ETCDREG_ENOLEADER) etcdreg__client_drop_connection(c, status, st->message);
  /* Reopen after a backoff; if the connection itself is gone, the reconnect comes first. */
  m->failures++;
  etcdreg_timerq_add(&c->timers, &m->retry, uv_now(c->loop) + etcdreg__stream_backoff(c, m->failures));
}

static void watch_retry_fire(etcdreg_timer_entry_t *e) {
  etcdreg_watch_mgr_t *m = (etcdreg_watch_mgr_t *)((char *)e - offsetof(etcdreg_watch_mgr_t, retry));
  etcdreg_client_t *c = (etcdreg_client_t *)((char *)m - offsetof(etcdreg_client_t, watch));
  etcdreg__watch_kick(c);
}

void etcdreg__watch_kick(etcdreg_client_t *c) {
  etcdreg_watch_mgr_t *m = mgr_of(c);
  if (c->closing || m->call || m->count == 0 || etcdreg_timer_entry_active(&m->retry)) return;
  etcdreg_grpc_call_cbs_t cbs = {watch_on_message, watch_on_close};
  uint64_t gen = 0;
  int rv = etcdreg__stream_open(c, WATCH_PATH, &cbs, c, &gen, &m->call);
  if (rv == ETCDREG_EBUSY) return; /* kicked again when the connection or token is there */
  if (rv) {
    m->call = NULL;
    m->failures++;
    etcdreg_timerq_add(&c->timers, &m->retry, uv_now(c->loop) + etcdreg__stream_backoff(c, m->failures));
    return;
  }
  /* (Re)create every watcher from its resume point. */
  for (etcdreg_watch_t *w = m->all; w; w = w->next) {
    if (send_create(m, w)) {
      watch_end(w, ETCDREG_ENOMEM, 0, "out of memory");
    }
  }
}

/* ---- public ---- */

int etcdreg_watch_start(etcdreg_client_t *c, const void *key, size_t key_len,
                        const etcdreg_watch_opts_t *opts, const etcdreg_watch_cbs_t *cbs, void *data,
                        etcdreg_watch_t **out) {
  static const etcdreg_watch_opts_t none;
  if (!c || !cbs || (key_len && !key)) return ETCDREG_EINVAL;
  if (!opts) opts = &none;
  if (c->closing) return ETCDREG_ECLOSED;
  if (opts->start_revision < 0 || (opts->range_end_len && !opts->range_end)) return ETCDREG_EINVAL;
  if (key_len == 0 && !opts->prefix) return ETCDREG_EINVAL;
  etcdreg_watch_t *w = calloc(1, sizeof(*w));
  if (!w) return ETCDREG_ENOMEM;
  w->client = c;
  if (key_len == 0) { /* every key */
    w->key = malloc(1);
    w->end = malloc(1);
    if (w->key) w->key[0] = 0;
    if (w->end) w->end[0] = 0;
    w->key_len = w->end_len = 1;
  } else {
    w->key = malloc(key_len);
    if (w->key) memcpy(w->key, key, key_len);
    w->key_len = key_len;
    if (opts->prefix) {
      w->end = malloc(key_len);
      if (w->end) w->end_len = etcdreg_prefix_end(key, key_len, w->end);
    } else if (opts->range_end_len) {
      w->end = malloc(opts->range_end_len);
      if (w->end) memcpy(w->end, opts->range_end, opts->range_end_len);
      w->end_len = opts->range_end_len;
    }
  }
  if (!w->key || ((opts->prefix || opts->range_end_len) && !w->end)) {
    watch_free(w);
    return ETCDREG_ENOMEM;
  }
  w->prev_kv = opts->prev_kv;
  w->no_put = opts->no_put;
  w->no_delete = opts->no_delete;
  w->progress_notify = opts->progress_notify;
  w->fragment = opts->fragment;
  w->next_rev = opts->start_revision;
  w->cbs = *cbs;
  w->data = data;
  etcdreg_watch_mgr_t *m = mgr_of(c);
  w->id = m->next_id++;
  if (etcdreg_idmap_put(&m->by_id, w->id, w)) {
    watch_free(w);
    return ETCDREG_ENOMEM;
  }
  w->next = m->all;
  if (m->all) m->all->prev = w;
  m->all = w;
  m->count++;
  if (m->call) {
    if (send_create(m, w)) {
      watch_end(w, ETCDREG_ENOMEM, 0, "out of memory");
    }
  } else {
    etcdreg__watch_kick(c);
  }
  if (out) *out = w;
  return 0;
}

void etcdreg_watch_cancel(etcdreg_watch_t *w) {
  if (!w || w->ended) return;
  etcdreg_watch_mgr_t *m = mgr_of(w->client);
  if (m->call) send_cancel(m, w->id);
  watch_end(w, ETCDREG_ECANCELED, 0, "cancelled by the application");
}

int64_t etcdreg_watch_next_revision(const etcdreg_watch_t *w) { return w ? w->next_rev : 0; }

/* The connection was retired (its member lost its leader): move to a new stream now. */
void etcdreg__watch_restart(etcdreg_client_t *c, const char *why) { restart_stream(c, why); }

void etcdreg__watch_fail_all(etcdreg_client_t *c, int status, const char *why) {
  etcdreg_watch_mgr_t *m = mgr_of(c);
  while (m->all) watch_end(m->all, status, 0, why);
}

void etcdreg__watch_close(etcdreg_client_t *c) {
  etcdreg_watch_mgr_t *m = mgr_of(c);
  etcdreg_timerq_remove(&c->timers, &m->retry);
  etcdreg__watch_fail_all(c, ETCDREG_ECLOSED, "client closed");
  etcdreg_idmap_free(&m->by_id);
  free(m->pending);
  m->pending = NULL;
  m->pending_len = m->pending_cap = 0;
}
