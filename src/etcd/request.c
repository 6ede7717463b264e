/* Unary requests: attempts, retries, parking while there is no connection or token, and
 * completion (exactly once, always from the loop). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void request_timer_fire(etcdreg_timer_entry_t *e);
static int request_attempt(etcdreg_request_t *req);

etcdreg_request_t *etcdreg__request_new(etcdreg_client_t *c, etcdreg_req_kind_t kind,
                                        int is_write, const ProtobufCMessageDescriptor *resp,
                                        etcdreg_req_dispatch_fn dispatch, void (*cb)(void),
                                        void *data) {
  etcdreg_request_t *req = calloc(1, sizeof(*req));
  if (!req) return NULL;
  req->client = c;
  req->kind = kind;
  req->is_write = is_write;
  req->resp_desc = resp;
  req->dispatch = dispatch;
  req->user_cb = cb;
  req->data = data;
  req->grpc_status = -1;
  req->message = "";
  etcdreg_timer_entry_init(&req->timer, request_timer_fire);
  return req;
}

void etcdreg__request_free(etcdreg_request_t *req) {
  if (req->resp) protobuf_c_message_free_unpacked(req->resp, NULL);
  free(req->payload);
  free(req->last_message);
  free(req);
}

/* ---- the parked FIFO ---- */

static void park(etcdreg_request_t *req) {
  etcdreg_client_t *c = req->client;
  if (req->parked) return;
  req->parked = 1;
  req->park_next = NULL;
  req->park_prev = c->parked_tail;
  if (c->parked_tail) c->parked_tail->park_next = req;
  else c->parked_head = req;
  c->parked_tail = req;
  c->parked_count++;
  /* While parked the timer watches the deadline. */
  if (!req->pending_status) etcdreg_timerq_add(&c->timers, &req->timer, req->deadline_ms);
}

static void unpark(etcdreg_request_t *req) {
  etcdreg_client_t *c = req->client;
  if (!req->parked) return;
  if (req->park_prev) req->park_prev->park_next = req->park_next;
  else c->parked_head = req->park_next;
  if (req->park_next) req->park_next->park_prev = req->park_prev;
  else c->parked_tail = req->park_prev;
  req->park_prev = req->park_next = NULL;
  req->parked = 0;
  c->parked_count--;
}

/* ---- completion ---- */

static void request_unlink(etcdreg_request_t *req) {
  etcdreg_client_t *c = req->client;
  if (req->prev) req->prev->next = req->next;
  else if (c->requests == req) c->requests = req->next;
  if (req->next) req->next->prev = req->prev;
  req->prev = req->next = NULL;
  c->request_count--;
}

/* Fires the user's callback once and frees the request. */
static void request_complete(etcdreg_request_t *req, int status, int grpc_status, const char *message) {
  etcdreg_client_t *c = req->client;
  unpark(req);
  etcdreg_timerq_remove(&c->timers, &req->timer);
  req->grpc_status = grpc_status;
  req->message = message ? message : "";
  req->completing = 1;
  request_unlink(req);
  req->dispatch(req, status, status == 0 ? req->resp : NULL);
  etcdreg__request_free(req);
  etcdreg__client_maybe_close_timers(c);
}

static void remember_error(etcdreg_request_t *req, int status, const char *message) {
  req->last_error = status;
  free(req->last_message);
  req->last_message = strdup(message ? message : "");
}

/* Completes later, from the loop (cancel, close). */
static void complete_soon(etcdreg_request_t *req, int status) {
  etcdreg_client_t *c = req->client;
  req->pending_status = status;
  etcdreg_timerq_add(&c->timers, &req->timer, uv_now(c->loop));
}

static void request_timer_fire(etcdreg_timer_entry_t *e) {
  etcdreg_request_t *req = (etcdreg_request_t *)((char *)e - offsetof(etcdreg_request_t, timer));
  if (req->pending_status) {
    const char *msg = req->pending_status == ETCDREG_ECANCELED ? "cancelled"
                      : req->last_message                     ? req->last_message
                                                              : etcdreg_strerror(req->pending_status);
    request_complete(req, req->pending_status, -1, msg);
    return;
  }
  if (req->parked) { /* the deadline passed while waiting */
    char msg[600];
    if (req->last_error)
      snprintf(msg, sizeof(msg), "deadline exceeded; last error: %s (%s)", etcdreg_strerror(req->last_error),
               req->last_message ? req->last_message : "");
    else
      snprintf(msg, sizeof(msg), "deadline exceeded while waiting for a connection");
    request_complete(req, ETCDREG_ETIMEDOUT, -1, msg);
    return;
  }
  req->delayed = 0;
  int rv = request_attempt(req);
  if (rv) request_complete(req, rv, -1, "could not start the retry");
}

/* ---- attempts ---- */

static int request_on_message(etcdreg_grpc_call_t *call, const uint8_t *msg, size_t len, void *data) {
  (void)call;
  etcdreg_request_t *req = data;
  if (req->resp) return ETCDREG_EPROTO; /* a unary call answers once */
  req->resp = protobuf_c_message_unpack(req->resp_desc, NULL, len, msg);
  return req->resp ? 0 : ETCDREG_EPROTO;
}

static void retry_after(etcdreg_request_t *req, uint64_t delay) {
  etcdreg_client_t *c = req->client;
  req->delayed = 1;
  etcdreg_timerq_add(&c->timers, &req->timer, uv_now(c->loop) + delay);
}

static void request_on_close(etcdreg_grpc_call_t *call, const etcdreg_grpc_status_t *st, void *data) {
  (void)call;
  etcdreg_request_t *req = data;
  etcdreg_client_t *c = req->client;
  req->call = NULL;
  int status, grpc_status = -1;
  const char *message = st->message;
  if (st->local) {
    status = st->local;
    if (status == ETCDREG_EUNAVAILABLE && st->sent && req->is_write) status = ETCDREG_EOUTCOMEUNKNOWN;
  } else {
    status = etcdreg__map_grpc_status(st->code, st->message);
    grpc_status = st->code;
    if (status == 0 && !req->resp) {
      status = ETCDREG_EPROTO;
      message = "response carried no message";
    }
    /* etcd answers UNAVAILABLE ("request timed out", "leader changed", ...) for writes
     * that may still be committed: the outcome is not known. */
    if (req->is_write && (status == ETCDREG_EUNAVAILABLE || status == ETCDREG_ENOLEADER))
      status = ETCDREG_EOUTCOMEUNKNOWN;
  }
  if (status == 0) etcdreg__client_note_success(c);
  if (status == 0 || c->closing || status == ETCDREG_ECANCELED) {
    request_complete(req, status, grpc_status, message);
    return;
  }
  if (req->resp) protobuf_c_message_free_unpacked(req->resp, NULL);
  req->resp = NULL;
  uint64_t now = uv_now(c->loop);

  /* etcd refused before proposing ("too many requests": its apply queue is behind). */
  if (status == ETCDREG_ERESOURCE && strstr(message, "too many requests")) {
    uint64_t delay = 20 + etcdreg__client_rand(c) % 80;
    if (now + delay < req->deadline_ms) {
      remember_error(req, status, message);
      retry_after(req, delay);
      return;
    }
  }
  /* A stale or missing token: refresh it and try once more. */
  if (status == ETCDREG_EINVALIDTOKEN && c->username && !req->no_auth && !req->auth_retried) {
    req->auth_retried = 1;
    remember_error(req, status, message);
    etcdreg__auth_invalidate(c, req->token_gen);
    int rv = request_attempt(req);
    if (rv) request_complete(req, rv, -1, "could not start the retry");
    return;
  }
  /* Unavailable (or no leader): retried when it provably never reached a server, or is a
   * read; on the next connection, which the client opens with backoff. */
  if ((status == ETCDREG_EUNAVAILABLE || status == ETCDREG_ENOLEADER) &&
      (!st->sent || !req->is_write) && now < req->deadline_ms &&
      (req->unavailable_attempts < c->max_retries || (st->never_connected && c->max_retries > 0))) {
    /* A dial that failed is the connection's problem, paced by the reconnect backoff:
     * it does not use up the call's retries (only its deadline bounds the wait). */
    if (!st->never_connected) req->unavailable_attempts++;
    remember_error(req, status, message);
    int rv = request_attempt(req);
    if (rv) request_complete(req, rv, -1, "could not start the retry");
    return;
  }
  request_complete(req, status, grpc_status, message);
}

/* One attempt: a fresh call on the current connection with the remaining deadline, or
 * parked until a connection (or a token) is there. 0 or an error to complete with. */
static int request_attempt(etcdreg_request_t *req) {
  etcdreg_client_t *c = req->client;
  if (c->closing) return ETCDREG_ECANCELED;
  etcdreg_grpc_metadata_t md[1];
  size_t md_count = 0;
  if (c->username && !req->no_auth) {
    if (!c->token) {
      park(req);
      etcdreg__auth_ensure(c);
      return 0;
    }
    if (c->token[0]) md[md_count++] = (etcdreg_grpc_metadata_t){"token", c->token};
    req->token_gen = c->token_gen;
  }
  etcdreg_grpc_channel_t *ch;
  int rv = etcdreg__client_channel(c, &ch);
  if (rv == ETCDREG_EBUSY) {
    park(req);
    etcdreg__client_want_connection(c);
    return 0;
  }
  if (rv) return rv;
  etcdreg_grpc_outmsg_t *out = etcdreg_grpc_outmsg_new(req->payload_len);
  if (!out) return ETCDREG_ENOMEM;
  memcpy(etcdreg_grpc_outmsg_payload(out), req->payload, req->payload_len);
  etcdreg_grpc_call_cbs_t cbs = {request_on_message, request_on_close};
  rv = etcdreg_grpc_call_start(ch, req->path, md, md_count, req->deadline_ms, &cbs, req, &req->call);
  if (rv) {
    etcdreg_grpc_outmsg_free(out);
    return rv;
  }
  etcdreg_grpc_call_send(req->call, out, 1);
  return 0;
}

int etcdreg__request_start(etcdreg_client_t *c, etcdreg_request_t *req, const char *path,
                           const ProtobufCMessage *msg, uint64_t timeout_ms) {
  if (c->closing) return ETCDREG_ECLOSED;
  size_t size = protobuf_c_message_get_packed_size(msg);
  if (size > c->max_send_msg) return ETCDREG_ETOOLARGE;
  req->payload = malloc(size ? size : 1);
  if (!req->payload) return ETCDREG_ENOMEM;
  req->payload_len = protobuf_c_message_pack(msg, req->payload);
  req->path = path;
  uint64_t now = uv_now(c->loop), timeout = timeout_ms ? timeout_ms : c->request_timeout_ms;
  req->deadline_ms = timeout > UINT64_MAX / 2 - now ? UINT64_MAX / 2 : now + timeout; /* no wrap */
  req->next = c->requests;
  if (c->requests) c->requests->prev = req;
  c->requests = req;
  c->request_count++;
  int rv = request_attempt(req);
  if (rv) {
    unpark(req);
    etcdreg_timerq_remove(&c->timers, &req->timer);
    request_unlink(req);
    return rv; /* the caller frees req */
  }
  return 0;
}

int etcdreg__submit(etcdreg_client_t *c, etcdreg_req_kind_t kind, int is_write, const char *path,
                    const ProtobufCMessage *msg, const ProtobufCMessageDescriptor *resp_desc,
                    etcdreg_req_dispatch_fn dispatch, void (*cb)(void), void *data, uint64_t timeout_ms,
                    etcdreg_request_t **req_out) {
  etcdreg_request_t *req = etcdreg__request_new(c, kind, is_write, resp_desc, dispatch, cb, data);
  if (!req) return ETCDREG_ENOMEM;
  int rv = etcdreg__request_start(c, req, path, msg, timeout_ms);
  if (rv) {
    etcdreg__request_free(req);
    return rv;
  }
  if (req_out) *req_out = req;
  return 0;
}

void etcdreg__client_kick(etcdreg_client_t *c) {
  /* Each request parked now is tried once; those that park again go to the back. */
  size_t budget = c->parked_count;
  while (budget-- > 0 && c->parked_head) {
    etcdreg_request_t *req = c->parked_head;
    unpark(req);
    etcdreg_timerq_remove(&c->timers, &req->timer);
    if (req->pending_status) {
      request_complete(req, req->pending_status, -1, "cancelled");
      continue;
    }
    int rv = request_attempt(req);
    if (rv) request_complete(req, rv, -1, "could not start the call");
  }
  etcdreg__watch_kick(c);
  etcdreg__keepalive_kick(c);
}

void etcdreg__fail_parked_auth(etcdreg_client_t *c, int status, const char *message) {
  size_t budget = c->parked_count;
  etcdreg_request_t *req = c->parked_head;
  while (budget-- > 0 && req) {
    etcdreg_request_t *next = req->park_next;
    if (!req->no_auth && !req->pending_status) {
      unpark(req);
      etcdreg_timerq_remove(&c->timers, &req->timer);
      remember_error(req, status, message);
      complete_soon(req, status); /* with the server's explanation (last_message) */
    }
    req = next;
  }
}

void etcdreg__cancel_waiting_requests(etcdreg_client_t *c) {
  for (etcdreg_request_t *req = c->requests; req; req = req->next) {
    if (req->call || req->pending_status) continue; /* in flight: the channel completes it */
    unpark(req);
    req->delayed = 0;
    complete_soon(req, ETCDREG_ECANCELED);
  }
}

int etcdreg_request_grpc_status(const etcdreg_request_t *req) { return req ? req->grpc_status : -1; }
const char *etcdreg_request_message(const etcdreg_request_t *req) {
  return req && req->message ? req->message : "";
}
etcdreg_client_t *etcdreg_request_client(const etcdreg_request_t *req) {
  return req ? req->client : NULL;
}

void etcdreg_request_cancel(etcdreg_request_t *req) {
  if (!req || req->completing || req->pending_status) return;
  if (req->call) {
    /* The cancelled attempt is not retried: its status is local ECANCELED. */
    etcdreg_grpc_call_cancel(req->call, ETCDREG_ECANCELED, "cancelled by the application");
    return;
  }
  unpark(req);
  req->delayed = 0;
  complete_soon(req, ETCDREG_ECANCELED);
}

void etcdreg__kv_from_pb(etcdreg_kv_t *out, const Mvccpb__KeyValue *kv) {
  out->key = kv->key.data;
  out->key_len = kv->key.len;
  out->value = kv->value.data ? kv->value.data : (const uint8_t *)"";
  out->value_len = kv->value.len;
  out->create_revision = kv->create_revision;
  out->mod_revision = kv->mod_revision;
  out->version = kv->version;
  out->lease = kv->lease;
}

void etcdreg__header_from_pb(etcdreg_header_t *out, const Etcdserverpb__ResponseHeader *h) {
  if (!h) {
    memset(out, 0, sizeof(*out));
    return;
  }
  out->cluster_id = h->cluster_id;
  out->member_id = h->member_id;
  out->revision = h->revision;
  out->raft_term = h->raft_term;
}
