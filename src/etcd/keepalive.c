/* Lease keepalive: every kept-alive lease of a client on one LeaseKeepAlive stream.
 *
 * Each keeper has two deadlines in the client's timer heap: when to send next (a third of
 * the TTL after the last answer; every 500 ms while unanswered) and when the lease must be
 * presumed gone (the TTL after the last answer). Keepalives due in the same loop turn
 * leave in one write. An answer with TTL <= 0 means the lease expired or was revoked.
 * The stream moves to the new connection after a reconnect; the next keepalive on it is
 * also the check that the lease survived the outage. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcdreg/lease.h"
#include "internal.h"

#define KEEPALIVE_PATH "/etcdserverpb.Lease/LeaseKeepAlive"
#define RESEND_MS 500

struct etcdreg_keepalive {
  etcdreg_client_t *client;
  int64_t id;
  uint64_t ttl_ms;
  etcdreg_timer_entry_t send_timer;
  etcdreg_timer_entry_t lost_timer;
  int ended;
  int end_status;
  char *end_reason;
  etcdreg_keepalive_cbs_t cbs;
  void *data;
  etcdreg_keepalive_t *prev, *next;
  etcdreg_keepalive_t *end_next;
};

static void ka_dispatch_fire(etcdreg_timer_entry_t *e);
static void ka_retry_fire(etcdreg_timer_entry_t *e);
static void ka_send_fire(etcdreg_timer_entry_t *e);
static void ka_lost_fire(etcdreg_timer_entry_t *e);

static etcdreg_keepalive_mgr_t *mgr_of(etcdreg_client_t *c) { return &c->keepalive; }

void etcdreg__keepalive_init(etcdreg_client_t *c) {
  etcdreg_keepalive_mgr_t *m = mgr_of(c);
  memset(m, 0, sizeof(*m));
  etcdreg_idmap_init(&m->by_id);
  etcdreg_timer_entry_init(&m->dispatch, ka_dispatch_fire);
  etcdreg_timer_entry_init(&m->retry, ka_retry_fire);
}

int etcdreg__keepalive_busy(const etcdreg_client_t *c) {
  const etcdreg_keepalive_mgr_t *m = &c->keepalive;
  return etcdreg_timer_entry_active(&m->dispatch) || m->ended_head != NULL;
}

static void ka_end(etcdreg_keepalive_t *k, int status, const char *reason) {
  if (k->ended) return;
  etcdreg_client_t *c = k->client;
  etcdreg_keepalive_mgr_t *m = mgr_of(c);
  k->ended = 1;
  k->end_status = status;
  k->end_reason = strdup(reason ? reason : "");
  etcdreg_timerq_remove(&c->timers, &k->send_timer);
  etcdreg_timerq_remove(&c->timers, &k->lost_timer);
  etcdreg_idmap_remove(&m->by_id, k->id);
  if (k->prev) k->prev->next = k->next;
  else m->all = k->next;
  if (k->next) k->next->prev = k->prev;
  m->count--;
  k->end_next = NULL;
  if (m->ended_tail) m->ended_tail->end_next = k;
  else m->ended_head = k;
  m->ended_tail = k;
  if (!etcdreg_timer_entry_active(&m->dispatch)) etcdreg_timerq_add(&c->timers, &m->dispatch, uv_now(c->loop));
}

static void ka_dispatch_fire(etcdreg_timer_entry_t *e) {
  etcdreg_keepalive_mgr_t *m = (etcdreg_keepalive_mgr_t *)((char *)e - offsetof(etcdreg_keepalive_mgr_t, dispatch));
  etcdreg_client_t *c = (etcdreg_client_t *)((char *)m - offsetof(etcdreg_client_t, keepalive));
  while (m->ended_head) {
    etcdreg_keepalive_t *k = m->ended_head;
    m->ended_head = k->end_next;
    if (!m->ended_head) m->ended_tail = NULL;
    if (k->cbs.ended) k->cbs.ended(k, k->end_status, k->end_reason, k->data);
    free(k->end_reason);
    free(k);
  }
  if (m->count == 0 && m->call) etcdreg_grpc_call_cancel(m->call, ETCDREG_ECANCELED, "no leases left");
  etcdreg__client_maybe_close_timers(c);
}

static void ka_send(etcdreg_keepalive_mgr_t *m, etcdreg_keepalive_t *k) {
  Etcdserverpb__LeaseKeepAliveRequest req;
  etcdserverpb__lease_keep_alive_request__init(&req);
  req.id = k->id;
  size_t size = etcdserverpb__lease_keep_alive_request__get_packed_size(&req);
  etcdreg_grpc_outmsg_t *out = etcdreg_grpc_outmsg_new(size);
  if (!out) return; /* resent on the next tick */
  etcdserverpb__lease_keep_alive_request__pack(&req, etcdreg_grpc_outmsg_payload(out));
  etcdreg_grpc_call_send(m->call, out, 0);
}

static void ka_send_fire(etcdreg_timer_entry_t *e) {
  etcdreg_keepalive_t *k = (etcdreg_keepalive_t *)((char *)e - offsetof(etcdreg_keepalive_t, send_timer));
  etcdreg_client_t *c = k->client;
  etcdreg_keepalive_mgr_t *m = mgr_of(c);
  /* Until an answer arrives, ask again every 500 ms. */
  etcdreg_timerq_add(&c->timers, &k->send_timer, uv_now(c->loop) + RESEND_MS);
  if (m->call) ka_send(m, k);
  else etcdreg__keepalive_kick(c);
}

static void ka_lost_fire(etcdreg_timer_entry_t *e) {
  etcdreg_keepalive_t *k = (etcdreg_keepalive_t *)((char *)e - offsetof(etcdreg_keepalive_t, lost_timer));
  char why[160];
  snprintf(why, sizeof(why), "no keepalive answer within the lease TTL (%llu ms); the lease may have expired",
           (unsigned long long)k->ttl_ms);
  etcdreg__log(k->client, ETCDREG_LOG_WARN, "lease %lld lost: %s", (long long)k->id, why);
  ka_end(k, ETCDREG_ELEASELOST, why);
}

static int ka_on_message(etcdreg_grpc_call_t *call, const uint8_t *msg, size_t len, void *data) {
  (void)call;
  etcdreg_client_t *c = data;
  etcdreg_keepalive_mgr_t *m = mgr_of(c);
  Etcdserverpb__LeaseKeepAliveResponse *r = etcdserverpb__lease_keep_alive_response__unpack(NULL, len, msg);
  if (!r) return ETCDREG_EPROTO;
  etcdreg_keepalive_t *k = etcdreg_idmap_get(&m->by_id, r->id);
  if (k) {
    m->failures = 0;
    etcdreg__client_note_success(c);
    if (r->ttl <= 0) {
      etcdreg__log(c, ETCDREG_LOG_WARN, "lease %lld lost: expired or revoked", (long long)k->id);
      ka_end(k, ETCDREG_ELEASELOST, "the lease expired or was revoked (the server answered TTL 0)");
    } else {
      uint64_t now = uv_now(c->loop), ttl_ms = (uint64_t)r->ttl * 1000;
      k->ttl_ms = ttl_ms;
      etcdreg_timerq_add(&c->timers, &k->send_timer, now + ttl_ms / 3);
      etcdreg_timerq_add(&c->timers, &k->lost_timer, now + ttl_ms);
      if (k->cbs.renewed) k->cbs.renewed(k, r->ttl, k->data);
    }
  }
  etcdserverpb__lease_keep_alive_response__free_unpacked(r, NULL);
  return 0;
}

static void ka_on_close(etcdreg_grpc_call_t *call, const etcdreg_grpc_status_t *st, void *data) {
  (void)call;
  etcdreg_client_t *c = data;
  etcdreg_keepalive_mgr_t *m = mgr_of(c);
  m->call = NULL;
  if (c->closing || m->count == 0) return;
  if (m->restarting) {
    m->restarting = 0;
    etcdreg__keepalive_kick(c);
    return;
  }
  int status = st->local ? st->local : etcdreg__map_grpc_status(st->code, st->message);
  etcdreg__log(c, ETCDREG_LOG_WARN, "keepalive stream ended: %s (%s); resuming %zu leases",
               etcdreg_strerror(status), st->message, m->count);
  if (status == ETCDREG_EINVALIDTOKEN) etcdreg__auth_invalidate(c, c->token_gen);
  if (status == ETCDREG_ENOLEADER) etcdreg__client_drop_connection(c, status, st->message);
  m->failures++;
  etcdreg_timerq_add(&c->timers, &m->retry, uv_now(c->loop) + etcdreg__stream_backoff(c, m->failures));
}

static void ka_retry_fire(etcdreg_timer_entry_t *e) {
  etcdreg_keepalive_mgr_t *m = (etcdreg_keepalive_mgr_t *)((char *)e - offsetof(etcdreg_keepalive_mgr_t, retry));
  etcdreg_client_t *c = (etcdreg_client_t *)((char *)m - offsetof(etcdreg_client_t, keepalive));
  etcdreg__keepalive_kick(c);
}

void etcdreg__keepalive_kick(etcdreg_client_t *c) {
  etcdreg_keepalive_mgr_t *m = mgr_of(c);
  if (c->closing || m->call || m->count == 0 || etcdreg_timer_entry_active(&m->retry)) return;
  etcdreg_grpc_call_cbs_t cbs = {ka_on_message, ka_on_close};
  uint64_t gen = 0;
  int rv = etcdreg__stream_open(c, KEEPALIVE_PATH, &cbs, c, &gen, &m->call);
  if (rv == ETCDREG_EBUSY) return;
  if (rv) {
    m->call = NULL;
    m->failures++;
    etcdreg_timerq_add(&c->timers, &m->retry, uv_now(c->loop) + etcdreg__stream_backoff(c, m->failures));
    return;
  }
  /* On a new stream every lease is renewed at once: that also tells whether it survived. */
  uint64_t now = uv_now(c->loop);
  for (etcdreg_keepalive_t *k = m->all; k; k = k->next) {
    ka_send(m, k);
    etcdreg_timerq_add(&c->timers, &k->send_timer, now + RESEND_MS);
  }
}

int etcdreg_lease_keepalive_start(etcdreg_client_t *c, int64_t id, int64_t ttl_s,
                                  const etcdreg_keepalive_cbs_t *cbs, void *data,
                                  etcdreg_keepalive_t **out) {
  if (!c || id <= 0 || ttl_s < 1 || !cbs) return ETCDREG_EINVAL;
  if (c->closing) return ETCDREG_ECLOSED;
  etcdreg_keepalive_mgr_t *m = mgr_of(c);
  if (etcdreg_idmap_get(&m->by_id, id)) return ETCDREG_EEXIST;
  etcdreg_keepalive_t *k = calloc(1, sizeof(*k));
  if (!k) return ETCDREG_ENOMEM;
  k->client = c;
  k->id = id;
  k->ttl_ms = (uint64_t)ttl_s * 1000;
  k->cbs = *cbs;
  k->data = data;
  etcdreg_timer_entry_init(&k->send_timer, ka_send_fire);
  etcdreg_timer_entry_init(&k->lost_timer, ka_lost_fire);
  if (etcdreg_idmap_put(&m->by_id, id, k)) {
    free(k);
    return ETCDREG_ENOMEM;
  }
  k->next = m->all;
  if (m->all) m->all->prev = k;
  m->all = k;
  m->count++;
  uint64_t now = uv_now(c->loop);
  etcdreg_timerq_add(&c->timers, &k->lost_timer, now + k->ttl_ms);
  if (m->call) {
    ka_send(m, k);
    etcdreg_timerq_add(&c->timers, &k->send_timer, now + RESEND_MS);
  } else {
    etcdreg_timerq_add(&c->timers, &k->send_timer, now + RESEND_MS);
    etcdreg__keepalive_kick(c); /* sends to every keeper once the stream is open */
  }
  if (out) *out = k;
  return 0;
}

void etcdreg_lease_keepalive_stop(etcdreg_keepalive_t *k) {
  if (!k || k->ended) return;
  ka_end(k, ETCDREG_ECANCELED, "stopped by the application");
}

int64_t etcdreg_keepalive_lease_id(const etcdreg_keepalive_t *k) { return k ? k->id : 0; }

/* The connection was retired: move the keepalives to a new stream now. */
void etcdreg__keepalive_restart(etcdreg_client_t *c, const char *why) {
  etcdreg_keepalive_mgr_t *m = mgr_of(c);
  if (!m->call) return;
  m->restarting = 1;
  etcdreg_grpc_call_cancel(m->call, ETCDREG_ECANCELED, why);
}

void etcdreg__keepalive_fail_all(etcdreg_client_t *c, int status, const char *why) {
  etcdreg_keepalive_mgr_t *m = mgr_of(c);
  while (m->all) ka_end(m->all, status, why);
}

void etcdreg__keepalive_close(etcdreg_client_t *c) {
  etcdreg_keepalive_mgr_t *m = mgr_of(c);
  etcdreg_timerq_remove(&c->timers, &m->retry);
  etcdreg__keepalive_fail_all(c, ETCDREG_ECLOSED, "client closed");
  etcdreg_idmap_free(&m->by_id);
}
