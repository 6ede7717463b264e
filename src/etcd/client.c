/* The etcd client: options, endpoints, the connection calls go to, request lifecycle
 * and close. Connections are made lazily and replaced when they become unusable; the
 * next connection goes to the next endpoint of the list. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct etcdreg_conn {
  etcdreg_client_t *client;
  etcdreg_grpc_channel_t *channel;
  etcdreg_conn_t *next;
};

static _Thread_local const char *last_option_error = "";

const char *etcdreg_version(void) { return ETCDREG_VERSION_STRING; }
const char *etcdreg_last_option_error(void) { return last_option_error; }

void etcdreg_client_options_init(etcdreg_client_options_t *opt) {
  if (!opt) return;
  memset(opt, 0, sizeof(*opt));
  opt->dial_timeout_ms = 5000;
  opt->request_timeout_ms = 10000;
  opt->max_recv_msg_bytes = 64u * 1024 * 1024;
  opt->stream_window_bytes = 4u * 1024 * 1024;
  opt->conn_window_bytes = 16u * 1024 * 1024;
  opt->max_retries = 3;
}

/* ---- endpoints ---- */

void etcdreg__endpoint_free(etcdreg_endpoint_t *ep) {
  free(ep->host);
  free(ep->authority);
  ep->host = ep->authority = NULL;
}

int etcdreg__endpoint_parse(const char *s, etcdreg_endpoint_t *ep, char *why, size_t why_len) {
  memset(ep, 0, sizeof(*ep));
  if (!s || !*s) {
    snprintf(why, why_len, "empty endpoint");
    return ETCDREG_EINVAL;
  }
  const char *p = s;
  if (strncmp(p, "http://", 7) == 0) {
    p += 7;
  } else if (strncmp(p, "https://", 8) == 0 || strncmp(p, "unix://", 7) == 0 ||
             strncmp(p, "unixs://", 8) == 0) {
    snprintf(why, why_len, "endpoint \"%s\": this version supports plain TCP endpoints only", s);
    return ETCDREG_ENOTSUP;
  } else if (strstr(p, "://")) {
    snprintf(why, why_len, "endpoint \"%s\": unknown scheme", s);
    return ETCDREG_EINVAL;
  }
  size_t len = strlen(p);
  while (len && p[len - 1] == '/') len--; /* "http://h:1/" */
  const char *host, *port_s;
  size_t host_len;
  if (p[0] == '[') {
    const char *close = memchr(p, ']', len);
    if (!close || close + 1 >= p + len || close[1] != ':') {
      snprintf(why, why_len, "endpoint \"%s\": expected [ipv6]:port", s);
      return ETCDREG_EINVAL;
    }
    host = p + 1;
    host_len = (size_t)(close - host);
    port_s = close + 2;
  } else {
    const char *colon = NULL;
    for (size_t i = 0; i < len; i++)
      if (p[i] == ':') colon = p + i;
    if (!colon || memchr(p, ':', (size_t)(colon - p))) {
      snprintf(why, why_len, "endpoint \"%s\": expected host:port (IPv6 in brackets)", s);
      return ETCDREG_EINVAL;
    }
    host = p;
    host_len = (size_t)(colon - p);
    port_s = colon + 1;
  }
  size_t port_len = (size_t)(p + len - port_s);
  long port = 0;
  for (size_t i = 0; i < port_len; i++) {
    if (port_s[i] < '0' || port_s[i] > '9' || port > 65535) {
      port = -1;
      break;
    }
    port = port * 10 + (port_s[i] - '0');
  }
  if (host_len == 0 || port_len == 0 || port <= 0 || port > 65535) {
    snprintf(why, why_len, "endpoint \"%s\": bad host or port", s);
    return ETCDREG_EINVAL;
  }
  ep->host = strndup(host, host_len);
  ep->port = (uint16_t)port;
  ep->authority = malloc(host_len + port_len + 4);
  if (!ep->host || !ep->authority) {
    etcdreg__endpoint_free(ep);
    return ETCDREG_ENOMEM;
  }
  if (p[0] == '[') sprintf(ep->authority, "[%.*s]:%u", (int)host_len, host, ep->port);
  else sprintf(ep->authority, "%.*s:%u", (int)host_len, host, ep->port);
  return 0;
}

/* ---- client ---- */

int etcdreg_client_new(uv_loop_t *loop, const etcdreg_client_options_t *opt,
                       etcdreg_client_t **out) {
  static _Thread_local char why[256];
  last_option_error = "";
  if (!loop || !opt || !out) {
    last_option_error = "loop, options and out are required";
    return ETCDREG_EINVAL;
  }
  if (!opt->endpoints || !opt->endpoints[0]) {
    last_option_error = "at least one endpoint is required";
    return ETCDREG_EINVAL;
  }
  if (opt->max_recv_msg_bytes && opt->max_recv_msg_bytes < 1024) {
    last_option_error = "max_recv_msg_bytes must be at least 1024";
    return ETCDREG_EINVAL;
  }
  if ((opt->stream_window_bytes && opt->stream_window_bytes < 65535) ||
      (opt->conn_window_bytes && opt->conn_window_bytes < 65535) ||
      opt->stream_window_bytes > 0x7fffffffu || opt->conn_window_bytes > 0x7fffffffu) {
    last_option_error = "HTTP/2 windows must be between 65535 and 2^31-1 bytes";
    return ETCDREG_EINVAL;
  }
  etcdreg_client_t *c = calloc(1, sizeof(*c));
  if (!c) return ETCDREG_ENOMEM;
  size_t n = 0;
  while (opt->endpoints[n]) n++;
  c->endpoints = calloc(n, sizeof(*c->endpoints));
  if (!c->endpoints) {
    free(c);
    return ETCDREG_ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    int rv = etcdreg__endpoint_parse(opt->endpoints[i], &c->endpoints[i], why, sizeof(why));
    if (rv) {
      for (size_t j = 0; j < i; j++) etcdreg__endpoint_free(&c->endpoints[j]);
      free(c->endpoints);
      free(c);
      last_option_error = why;
      return rv == ETCDREG_ENOTSUP ? ETCDREG_EINVAL : rv;
    }
  }
  c->endpoint_count = n;
  c->loop = loop;
  c->dial_timeout_ms = opt->dial_timeout_ms ? opt->dial_timeout_ms : 5000;
  c->request_timeout_ms = opt->request_timeout_ms ? opt->request_timeout_ms : 10000;
  c->max_recv_msg = opt->max_recv_msg_bytes ? opt->max_recv_msg_bytes : 64u * 1024 * 1024;
  c->max_send_msg = 2u * 1024 * 1024;
  c->stream_window = opt->stream_window_bytes ? opt->stream_window_bytes : 4u * 1024 * 1024;
  c->conn_window = opt->conn_window_bytes ? opt->conn_window_bytes : 16u * 1024 * 1024;
  c->user_agent = strdup(opt->user_agent ? opt->user_agent : "grpc-c-etcdreg/" ETCDREG_VERSION_STRING);
  c->max_retries = opt->max_retries >= 0 ? opt->max_retries : 0;
  c->rng = (uint32_t)(uintptr_t)c ^ (uint32_t)uv_hrtime();
  if (etcdreg_timerq_init(loop, &c->timers)) {
    for (size_t i = 0; i < n; i++) etcdreg__endpoint_free(&c->endpoints[i]);
    free(c->endpoints);
    free(c->user_agent);
    free(c);
    return ETCDREG_ENOMEM;
  }
  *out = c;
  return 0;
}

uv_loop_t *etcdreg_client_loop(const etcdreg_client_t *c) { return c->loop; }

static void client_maybe_finish_close(etcdreg_client_t *c) {
  if (!c->closing || c->conns || !c->timers_closed) return;
  /* The callback still sees a valid (closed) client; it is freed right after. */
  if (c->close_cb) c->close_cb(c, c->close_data);
  for (size_t i = 0; i < c->endpoint_count; i++) etcdreg__endpoint_free(&c->endpoints[i]);
  free(c->endpoints);
  free(c->user_agent);
  free(c);
}

static void conn_on_unusable(etcdreg_grpc_channel_t *ch, int err, const char *why, void *data) {
  (void)ch;
  (void)err;
  (void)why;
  etcdreg_conn_t *conn = data;
  etcdreg_client_t *c = conn->client;
  if (c->current == conn) {
    c->current = NULL;
    /* The next connection tries the next endpoint. */
    c->endpoint_index = (c->endpoint_index + 1) % c->endpoint_count;
  }
}

static void conn_on_closed(void *data) {
  etcdreg_conn_t *conn = data;
  etcdreg_client_t *c = conn->client;
  for (etcdreg_conn_t **pp = &c->conns; *pp; pp = &(*pp)->next) {
    if (*pp == conn) {
      *pp = conn->next;
      break;
    }
  }
  if (c->current == conn) c->current = NULL;
  free(conn);
  client_maybe_finish_close(c);
}

static int client_connection(etcdreg_client_t *c, etcdreg_grpc_channel_t **out) {
  if (c->current && etcdreg_grpc_channel_usable(c->current->channel)) {
    *out = c->current->channel;
    return 0;
  }
  c->current = NULL;
  etcdreg_conn_t *conn = calloc(1, sizeof(*conn));
  if (!conn) return ETCDREG_ENOMEM;
  conn->client = c;
  const etcdreg_endpoint_t *ep = &c->endpoints[c->endpoint_index];
  etcdreg_transport_config_t tcfg = {ep->host, ep->port, c->dial_timeout_ms};
  etcdreg_grpc_channel_options_t copts = {ep->authority, ep->tls ? "https" : "http",
                                          c->user_agent, c->max_recv_msg, c->stream_window,
                                          c->conn_window};
  etcdreg_grpc_channel_cbs_t cbs = {NULL, conn_on_unusable, conn_on_closed};
  int rv = etcdreg_grpc_channel_new(c->loop, &tcfg, &copts, &cbs, conn, &conn->channel);
  if (rv) {
    free(conn);
    return rv;
  }
  conn->next = c->conns;
  c->conns = conn;
  c->current = conn;
  *out = conn->channel;
  return 0;
}

static void timers_closed(etcdreg_timerq_t *q) {
  etcdreg_client_t *c = (etcdreg_client_t *)((char *)q - offsetof(etcdreg_client_t, timers));
  c->timers_closed = 1;
  client_maybe_finish_close(c);
}

/* The timer heap closes once no request waits for a retry any more. */
static void client_maybe_close_timers(etcdreg_client_t *c) {
  if (!c->closing || c->waiting_count || c->timers_closing) return;
  c->timers_closing = 1;
  etcdreg_timerq_close(&c->timers, timers_closed);
}

int etcdreg_client_close(etcdreg_client_t *c, etcdreg_close_cb cb, void *data) {
  if (!c) return ETCDREG_EINVAL;
  if (c->closing) return ETCDREG_ECLOSED;
  c->closing = 1;
  c->close_cb = cb;
  c->close_data = data;
  c->current = NULL;
  /* Every call completes with ECANCELED from its channel, then the channels close. */
  for (etcdreg_conn_t *conn = c->conns; conn; conn = conn->next)
    etcdreg_grpc_channel_close(conn->channel, ETCDREG_ECANCELED, "client closed");
  /* Requests waiting for a retry complete now (from the loop), cancelled. */
  uint64_t now = uv_now(c->loop);
  for (etcdreg_request_t *req = c->requests; req; req = req->next) {
    if (!req->waiting) continue;
    req->pending_status = ETCDREG_ECANCELED;
    etcdreg_timerq_add(&c->timers, &req->retry_timer, now);
  }
  client_maybe_close_timers(c);
  return 0;
}

/* ---- requests ---- */

static void request_retry_fire(etcdreg_timer_entry_t *e);

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
  etcdreg_timer_entry_init(&req->retry_timer, request_retry_fire);
  return req;
}

void etcdreg__request_free(etcdreg_request_t *req) {
  if (req->resp) protobuf_c_message_free_unpacked(req->resp, NULL);
  free(req->payload);
  free(req);
}

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
  req->grpc_status = grpc_status;
  req->message = message ? message : "";
  req->completing = 1;
  request_unlink(req);
  req->dispatch(req, status, status == 0 ? req->resp : NULL);
  etcdreg__request_free(req);
  client_maybe_close_timers(c);
}

static uint32_t client_rand(etcdreg_client_t *c) {
  c->rng ^= c->rng << 13;
  c->rng ^= c->rng >> 17;
  c->rng ^= c->rng << 5;
  return c->rng;
}

/* Delay before attempt `attempt` (1-based): exponential from `base`, capped, +-20 %. */
static uint64_t retry_delay(etcdreg_client_t *c, int attempt, uint64_t base, uint64_t cap) {
  uint64_t d = base;
  for (int i = 1; i < attempt && d < cap; i++) d = d * 8 / 5;
  if (d > cap) d = cap;
  uint64_t spread = d / 5;
  return spread ? d - spread + client_rand(c) % (2 * spread + 1) : d;
}

/* May this failed attempt be tried again? Returns the delay, or 0 for "no". */
static uint64_t request_retry_in(etcdreg_request_t *req, int status, const etcdreg_grpc_status_t *st) {
  etcdreg_client_t *c = req->client;
  if (c->closing) return 0;
  uint64_t delay = 0;
  if (status == ETCDREG_ERESOURCE && st->message && strstr(st->message, "too many requests")) {
    /* etcd refused before proposing (its apply queue is behind): always safe. Bounded by
     * the deadline only; it clears as etcd catches up. */
    delay = retry_delay(c, req->attempts, 20, 500);
  } else if (status == ETCDREG_EUNAVAILABLE && req->attempts <= c->max_retries) {
    /* Never reached a server, or an idempotent read: try again (next endpoint). */
    if (!st->sent || !req->is_write) delay = retry_delay(c, req->attempts, 100, 2000);
  }
  if (!delay) return 0;
  if (uv_now(c->loop) + delay >= req->deadline_ms) return 0;
  return delay;
}

static int request_attempt(etcdreg_request_t *req);

static void request_retry_fire(etcdreg_timer_entry_t *e) {
  etcdreg_request_t *req = (etcdreg_request_t *)((char *)e - offsetof(etcdreg_request_t, retry_timer));
  etcdreg_client_t *c = req->client;
  req->waiting = 0;
  c->waiting_count--;
  if (req->pending_status) {
    request_complete(req, req->pending_status, -1,
                     req->pending_status == ETCDREG_ECANCELED ? "cancelled" : etcdreg_strerror(req->pending_status));
    return;
  }
  int rv = request_attempt(req);
  if (rv) request_complete(req, rv, -1, "could not start the retry");
}

static int request_on_message(etcdreg_grpc_call_t *call, const uint8_t *msg, size_t len, void *data) {
  (void)call;
  etcdreg_request_t *req = data;
  if (req->resp) return ETCDREG_EPROTO; /* a unary call answers once */
  req->resp = protobuf_c_message_unpack(req->resp_desc, NULL, len, msg);
  return req->resp ? 0 : ETCDREG_EPROTO;
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
  }
  uint64_t delay = status ? request_retry_in(req, status, st) : 0;
  if (delay) {
    if (req->resp) protobuf_c_message_free_unpacked(req->resp, NULL);
    req->resp = NULL;
    req->waiting = 1;
    c->waiting_count++;
    if (etcdreg_timerq_add(&c->timers, &req->retry_timer, uv_now(c->loop) + delay) == 0) return;
    req->waiting = 0;
    c->waiting_count--;
  }
  request_complete(req, status, grpc_status, message);
}

/* One attempt: a fresh call on the current connection with the remaining deadline. */
static int request_attempt(etcdreg_request_t *req) {
  etcdreg_client_t *c = req->client;
  etcdreg_grpc_channel_t *ch;
  int rv = client_connection(c, &ch);
  if (rv) return rv;
  etcdreg_grpc_outmsg_t *out = etcdreg_grpc_outmsg_new(req->payload_len);
  if (!out) return ETCDREG_ENOMEM;
  memcpy(etcdreg_grpc_outmsg_payload(out), req->payload, req->payload_len);
  etcdreg_grpc_call_cbs_t cbs = {request_on_message, request_on_close};
  rv = etcdreg_grpc_call_start(ch, req->path, NULL, 0, req->deadline_ms, &cbs, req, &req->call);
  if (rv) {
    etcdreg_grpc_outmsg_free(out);
    return rv;
  }
  req->attempts++;
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
  req->deadline_ms = uv_now(c->loop) + (timeout_ms ? timeout_ms : c->request_timeout_ms);
  int rv = request_attempt(req);
  if (rv) return rv; /* the caller frees req (payload included) */
  req->next = c->requests;
  if (c->requests) c->requests->prev = req;
  c->requests = req;
  c->request_count++;
  return 0;
}

int etcdreg_request_grpc_status(const etcdreg_request_t *req) { return req ? req->grpc_status : -1; }
const char *etcdreg_request_message(const etcdreg_request_t *req) {
  return req && req->message ? req->message : "";
}
etcdreg_client_t *etcdreg_request_client(const etcdreg_request_t *req) {
  return req ? req->client : NULL;
}

void etcdreg_request_cancel(etcdreg_request_t *req) {
  if (!req || req->completing) return;
  if (req->call) {
    /* The cancelled attempt is not retried: its status is local ECANCELED. */
    etcdreg_grpc_call_cancel(req->call, ETCDREG_ECANCELED, "cancelled by the application");
  } else if (req->waiting && !req->pending_status) {
    req->pending_status = ETCDREG_ECANCELED;
    etcdreg_timerq_add(&req->client->timers, &req->retry_timer, uv_now(req->client->loop));
  }
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
