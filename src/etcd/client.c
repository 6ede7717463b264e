/* The etcd client: options, endpoints, the connection calls go to, reconnection with
 * backoff, connection state and logging, and close.
 *
 * One connection at a time takes new calls ("current"). When it becomes unusable the
 * next one goes to the next endpoint after a backoff (reset once a connection is
 * ready). Calls that cannot start meanwhile wait, parked, until the connection is up or
 * their deadline passes (request.c). */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct etcdreg_conn {
  etcdreg_client_t *client;
  etcdreg_grpc_channel_t *channel;
  size_t endpoint_index;
  int ready;
  etcdreg_conn_t *next;
};

static _Thread_local const char *last_option_error = "";

const char *etcdreg_version(void) { return ETCDREG_VERSION_STRING; }
const char *etcdreg_last_option_error(void) { return last_option_error; }

const char *etcdreg_conn_state_name(etcdreg_conn_state_t state) {
  switch (state) {
  case ETCDREG_STATE_IDLE: return "idle";
  case ETCDREG_STATE_CONNECTING: return "connecting";
  case ETCDREG_STATE_READY: return "ready";
  case ETCDREG_STATE_RECONNECTING: return "reconnecting";
  case ETCDREG_STATE_CLOSED: return "closed";
  default: return "unknown";
  }
}

void etcdreg_client_options_init(etcdreg_client_options_t *opt) {
  if (!opt) return;
  memset(opt, 0, sizeof(*opt));
  opt->dial_timeout_ms = 5000;
  opt->request_timeout_ms = 10000;
  opt->max_recv_msg_bytes = 64u * 1024 * 1024;
  opt->stream_window_bytes = 4u * 1024 * 1024;
  opt->conn_window_bytes = 16u * 1024 * 1024;
  opt->max_retries = 10;
  opt->backoff_initial_ms = 100;
  opt->backoff_multiplier = 1.6;
  opt->backoff_max_ms = 10000;
  opt->backoff_jitter = 0.2;
  opt->keepalive_interval_ms = 30000;
  opt->keepalive_timeout_ms = 10000;
}

/* ---- logging ---- */

void etcdreg__log(etcdreg_client_t *c, etcdreg_log_level_t level, const char *fmt, ...) {
  if (!c->log) return;
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  c->log(level, buf, c->callback_data);
}

uint32_t etcdreg__client_rand(etcdreg_client_t *c) {
  c->rng ^= c->rng << 13;
  c->rng ^= c->rng >> 17;
  c->rng ^= c->rng << 5;
  return c->rng;
}

static void client_set_state(etcdreg_client_t *c, etcdreg_conn_state_t state, int err,
                             const char *detail, const char *endpoint) {
  if (c->state == state && state != ETCDREG_STATE_RECONNECTING) return;
  c->state = state;
  if (c->on_state) c->on_state(c, state, err, detail ? detail : "", endpoint ? endpoint : "", c->callback_data);
}

etcdreg_conn_state_t etcdreg_client_state(const etcdreg_client_t *c) { return c->state; }

/* ---- endpoints ---- */

void etcdreg__endpoint_free(etcdreg_endpoint_t *ep) {
  free(ep->host);
  free(ep->unix_path);
  free(ep->authority);
  free(ep->text);
  memset(ep, 0, sizeof(*ep));
}

int etcdreg__endpoint_parse(const char *s, etcdreg_endpoint_t *ep, char *why, size_t why_len) {
  memset(ep, 0, sizeof(*ep));
  if (!s || !*s) {
    snprintf(why, why_len, "empty endpoint");
    return ETCDREG_EINVAL;
  }
  const char *p = s;
  if (strncmp(p, "unix://", 7) == 0 || strncmp(p, "unixs://", 8) == 0) {
    int secure = p[4] == 's';
    const char *path = p + (secure ? 8 : 7);
    if (!*path) {
      snprintf(why, why_len, "endpoint \"%s\": missing socket path", s);
      return ETCDREG_EINVAL;
    }
    ep->tls = secure;
    ep->unix_path = strdup(path);
    ep->authority = strdup("localhost");
    ep->text = strdup(s);
    if (!ep->unix_path || !ep->authority || !ep->text) {
      etcdreg__endpoint_free(ep);
      return ETCDREG_ENOMEM;
    }
    return 0;
  }
  if (strncmp(p, "http://", 7) == 0) {
    p += 7;
  } else if (strncmp(p, "https://", 8) == 0) {
    p += 8;
    ep->tls = 1;
  } else if (strstr(p, "://")) {
    snprintf(why, why_len, "endpoint \"%s\": unknown scheme (use http://, https://, unix:// or unixs://)", s);
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
  ep->text = strdup(s);
  if (!ep->host || !ep->authority || !ep->text) {
    etcdreg__endpoint_free(ep);
    return ETCDREG_ENOMEM;
  }
  if (p[0] == '[') sprintf(ep->authority, "[%.*s]:%u", (int)host_len, host, ep->port);
  else sprintf(ep->authority, "%.*s:%u", (int)host_len, host, ep->port);
  return 0;
}

/* ---- client ---- */

static void reconnect_fire(etcdreg_timer_entry_t *e);

static void client_free(etcdreg_client_t *c) {
  for (size_t i = 0; i < c->endpoint_count; i++) etcdreg__endpoint_free(&c->endpoints[i]);
  free(c->endpoints);
  free(c->user_agent);
  free(c->username);
  if (c->password) memset(c->password, 0, strlen(c->password));
  free(c->password);
  free(c->token);
  free(c->tls_server_name);
  etcdreg_tls_ctx_free(c->tls);
  free(c);
}

static const char *validate_options(const etcdreg_client_options_t *opt) {
  if (!opt->endpoints || !opt->endpoints[0]) return "at least one endpoint is required";
  if (opt->max_recv_msg_bytes && opt->max_recv_msg_bytes < 1024)
    return "max_recv_msg_bytes must be at least 1024";
  if ((opt->stream_window_bytes && opt->stream_window_bytes < 65535) ||
      (opt->conn_window_bytes && opt->conn_window_bytes < 65535) ||
      opt->stream_window_bytes > 0x7fffffffu || opt->conn_window_bytes > 0x7fffffffu)
    return "HTTP/2 windows must be between 65535 and 2^31-1 bytes";
  if (opt->max_retries < 0) return "max_retries must not be negative";
  /* Written as !(x >= y) so that NaN is refused too. */
  if (opt->backoff_multiplier != 0 && !(opt->backoff_multiplier >= 1.0 && opt->backoff_multiplier <= 100.0))
    return "backoff_multiplier must be between 1 and 100";
  if (!(opt->backoff_jitter >= 0 && opt->backoff_jitter <= 1.0)) return "backoff_jitter must be between 0 and 1";
  if (opt->backoff_max_ms && opt->backoff_initial_ms > opt->backoff_max_ms)
    return "backoff_initial_ms must not exceed backoff_max_ms";
  if (opt->keepalive_interval_ms && opt->keepalive_interval_ms < 100)
    return "keepalive_interval_ms must be 0 (off) or at least 100";
  if (opt->password && !opt->username) return "a password needs a username";
  if (opt->username && !opt->username[0]) return "username must not be empty";
  return NULL;
}

int etcdreg_client_new(uv_loop_t *loop, const etcdreg_client_options_t *opt,
                       etcdreg_client_t **out) {
  static _Thread_local char why[256];
  last_option_error = "";
  if (!loop || !opt || !out) {
    last_option_error = "loop, options and out are required";
    return ETCDREG_EINVAL;
  }
  const char *bad = validate_options(opt);
  if (bad) {
    last_option_error = bad;
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
  c->endpoint_count = n;
  for (size_t i = 0; i < n; i++) {
    int rv = etcdreg__endpoint_parse(opt->endpoints[i], &c->endpoints[i], why, sizeof(why));
    if (rv) {
      client_free(c);
      last_option_error = why;
      return rv == ETCDREG_ENOMEM ? rv : ETCDREG_EINVAL;
    }
  }
  c->loop = loop;
  c->dial_timeout_ms = opt->dial_timeout_ms ? opt->dial_timeout_ms : 5000;
  c->request_timeout_ms = opt->request_timeout_ms ? opt->request_timeout_ms : 10000;
  c->max_recv_msg = opt->max_recv_msg_bytes ? opt->max_recv_msg_bytes : 64u * 1024 * 1024;
  c->max_send_msg = 2u * 1024 * 1024;
  c->stream_window = opt->stream_window_bytes ? opt->stream_window_bytes : 4u * 1024 * 1024;
  c->conn_window = opt->conn_window_bytes ? opt->conn_window_bytes : 16u * 1024 * 1024;
  c->keepalive_interval_ms = opt->keepalive_interval_ms;
  c->keepalive_timeout_ms = opt->keepalive_timeout_ms ? opt->keepalive_timeout_ms : 10000;
  c->max_retries = opt->max_retries;
  c->backoff_initial_ms = opt->backoff_initial_ms ? opt->backoff_initial_ms : 100;
  c->backoff_multiplier = opt->backoff_multiplier ? opt->backoff_multiplier : 1.6;
  c->backoff_max_ms = opt->backoff_max_ms ? opt->backoff_max_ms : 10000;
  c->backoff_jitter = opt->backoff_jitter;
  c->on_state = opt->on_state;
  c->log = opt->log;
  c->callback_data = opt->callback_data;
  c->user_agent = strdup(opt->user_agent ? opt->user_agent : "grpc-c-etcdreg/" ETCDREG_VERSION_STRING);
  if (opt->username) {
    c->username = strdup(opt->username);
    c->password = strdup(opt->password ? opt->password : "");
  }
  /* TLS: https:// endpoints, or every bare endpoint once TLS settings are given. */
  int want_tls = opt->tls_ca_file || opt->tls_cert_file || opt->tls_server_name;
  int any_tls = 0;
  for (size_t i = 0; i < n; i++) {
    int bare = strstr(opt->endpoints[i], "://") == NULL;
    if (bare && want_tls) c->endpoints[i].tls = 1;
    any_tls |= c->endpoints[i].tls;
  }
  if (any_tls) {
    etcdreg_tls_options_t to = {opt->tls_ca_file, opt->tls_cert_file, opt->tls_key_file, opt->tls_insecure_skip_verify};
    int rv = etcdreg_tls_ctx_new(&to, &c->tls, why, sizeof(why));
    if (rv) {
      client_free(c);
      last_option_error = why;
      return rv == ETCDREG_ENOMEM ? rv : ETCDREG_EINVAL;
    }
    if (opt->tls_server_name) c->tls_server_name = strdup(opt->tls_server_name);
  }
  c->rng = (uint32_t)(uintptr_t)c ^ (uint32_t)uv_hrtime() ^ 0x9e3779b9u;
  if (!c->rng) c->rng = 1;
  etcdreg_timer_entry_init(&c->reconnect_timer, reconnect_fire);
  etcdreg__watch_init(c);
  etcdreg__keepalive_init(c);
  if (!c->user_agent || (opt->username && (!c->username || !c->password)) ||
      etcdreg_timerq_init(loop, &c->timers)) {
    client_free(c);
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
  client_free(c);
}

/* ---- connections ---- */

static uint64_t backoff_delay(etcdreg_client_t *c) {
  double d = (double)c->backoff_initial_ms;
  for (int i = 1; i < c->failures && d < (double)c->backoff_max_ms; i++) d *= c->backoff_multiplier;
  if (d > (double)c->backoff_max_ms) d = (double)c->backoff_max_ms;
  if (c->backoff_jitter > 0) {
    double r = (double)(etcdreg__client_rand(c) % 10001) / 10000.0; /* 0..1 */
    d *= 1.0 + c->backoff_jitter * (2.0 * r - 1.0);
  }
  return d < 1 ? 1 : (uint64_t)d;
}

static void conn_on_ready(etcdreg_grpc_channel_t *ch, void *data) {
  (void)ch;
  etcdreg_conn_t *conn = data;
  etcdreg_client_t *c = conn->client;
  conn->ready = 1;
  if (c->current != conn) return;
  /* The backoff is reset by the first call that succeeds, not by TCP: a member that
   * accepts connections but cannot serve (no leader) must not be hammered. */
  etcdreg__log(c, ETCDREG_LOG_INFO, "connected to %s", c->endpoints[conn->endpoint_index].text);
  client_set_state(c, ETCDREG_STATE_READY, 0, "", c->endpoints[conn->endpoint_index].text);
}

static void conn_on_unusable(etcdreg_grpc_channel_t *ch, int err, const char *why, void *data) {
  (void)ch;
  etcdreg_conn_t *conn = data;
  etcdreg_client_t *c = conn->client;
  if (c->current != conn || c->closing) return;
  c->current = NULL;
  const char *ep = c->endpoints[conn->endpoint_index].text;
  /* A connection that was up failed: reconnect after the initial backoff. One that
   * never came up: back off further. */
  c->failures++;
  uint64_t delay = backoff_delay(c);
  c->next_connect_at = uv_now(c->loop) + delay;
  c->endpoint_index = (conn->endpoint_index + 1) % c->endpoint_count;
  etcdreg__log(c, ETCDREG_LOG_WARN, "connection to %s failed: %s; reconnecting to %s in %llu ms",
               ep, why, c->endpoints[c->endpoint_index].text, (unsigned long long)delay);
  client_set_state(c, ETCDREG_STATE_RECONNECTING, err, why, ep);
  if (c->parked_count || etcdreg__streams_wanted(c)) etcdreg__client_want_connection(c);
}

int etcdreg__streams_wanted(const etcdreg_client_t *c) {
  return c->watch.count > 0 || c->keepalive.count > 0;
}

void etcdreg__client_drop_connection(etcdreg_client_t *c, int err, const char *why) {
  if (!c->current) return;
  etcdreg_conn_t *conn = c->current;
  /* Reported like any other failure (rotation, backoff); calls already running on it
   * finish there (a write in flight must not become "outcome unknown" for nothing). */
  conn_on_unusable(conn->channel, err, why, conn);
  etcdreg_grpc_channel_retire(conn->channel);
  /* Long-lived streams never finish by themselves: move them now. */
  etcdreg__watch_restart(c, why);
  etcdreg__keepalive_restart(c, why);
}

void etcdreg__client_note_success(etcdreg_client_t *c) { c->failures = 0; }

uint64_t etcdreg__stream_backoff(etcdreg_client_t *c, int failures) {
  uint64_t d = c->backoff_initial_ms;
  for (int i = 1; i < failures && d < c->backoff_max_ms; i++) d = (uint64_t)((double)d * c->backoff_multiplier);
  if (d > c->backoff_max_ms) d = c->backoff_max_ms;
  return d / 2 + etcdreg__client_rand(c) % (d / 2 + 1);
}

int etcdreg__stream_open(etcdreg_client_t *c, const char *path, const etcdreg_grpc_call_cbs_t *cbs,
                         void *data, uint64_t *token_gen, etcdreg_grpc_call_t **out) {
  if (c->closing) return ETCDREG_ECLOSED;
  etcdreg_grpc_metadata_t md[2];
  size_t n = 0;
  if (c->username) {
    if (!c->token) {
      etcdreg__auth_ensure(c);
      return ETCDREG_EBUSY;
    }
    if (c->token[0]) md[n++] = (etcdreg_grpc_metadata_t){"token", c->token};
    *token_gen = c->token_gen;
  }
  /* A member without a leader cancels streams carrying this instead of going silent. */
  md[n++] = (etcdreg_grpc_metadata_t){"hasleader", "true"};
  etcdreg_grpc_channel_t *ch;
  int rv = etcdreg__client_channel(c, &ch);
  if (rv == ETCDREG_EBUSY) {
    etcdreg__client_want_connection(c);
    return rv;
  }
  if (rv) return rv;
  return etcdreg_grpc_call_start(ch, path, md, n, 0, cbs, data, out);
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

int etcdreg__client_channel(etcdreg_client_t *c, etcdreg_grpc_channel_t **out) {
  if (c->closing) return ETCDREG_ECLOSED;
  if (c->current && etcdreg_grpc_channel_usable(c->current->channel)) {
    *out = c->current->channel;
    return 0;
  }
  c->current = NULL;
  if (uv_now(c->loop) < c->next_connect_at) return ETCDREG_EBUSY;
  etcdreg_conn_t *conn = calloc(1, sizeof(*conn));
  if (!conn) return ETCDREG_ENOMEM;
  conn->client = c;
  conn->endpoint_index = c->endpoint_index;
  const etcdreg_endpoint_t *ep = &c->endpoints[c->endpoint_index];
  etcdreg_transport_config_t tcfg = {ep->host, ep->port, ep->unix_path, c->dial_timeout_ms,
                                     ep->tls ? c->tls : NULL, c->tls_server_name};
  etcdreg_grpc_channel_options_t copts = {ep->authority, ep->tls ? "https" : "http",
                                          c->user_agent, c->max_recv_msg, c->stream_window,
                                          c->conn_window, c->keepalive_interval_ms,
                                          c->keepalive_timeout_ms};
  etcdreg_grpc_channel_cbs_t cbs = {conn_on_ready, conn_on_unusable, conn_on_closed};
  int rv = etcdreg_grpc_channel_new(c->loop, &tcfg, &copts, &cbs, conn, &conn->channel);
  if (rv) {
    free(conn);
    return rv;
  }
  conn->next = c->conns;
  c->conns = conn;
  c->current = conn;
  etcdreg__log(c, ETCDREG_LOG_DEBUG, "connecting to %s", ep->text);
  client_set_state(c, ETCDREG_STATE_CONNECTING, 0, "", ep->text);
  *out = conn->channel;
  return 0;
}

static void reconnect_fire(etcdreg_timer_entry_t *e) {
  etcdreg_client_t *c = (etcdreg_client_t *)((char *)e - offsetof(etcdreg_client_t, reconnect_timer));
  etcdreg__client_kick(c);
}

void etcdreg__client_want_connection(etcdreg_client_t *c) {
  if (c->closing || etcdreg_timer_entry_active(&c->reconnect_timer)) return;
  uint64_t now = uv_now(c->loop);
  etcdreg_timerq_add(&c->timers, &c->reconnect_timer, c->next_connect_at > now ? c->next_connect_at : now);
}

/* ---- close ---- */

static void timers_closed(etcdreg_timerq_t *q) {
  etcdreg_client_t *c = (etcdreg_client_t *)((char *)q - offsetof(etcdreg_client_t, timers));
  c->timers_closed = 1;
  client_maybe_finish_close(c);
}

/* The timer heap closes once no request waits on it any more. */
void etcdreg__client_maybe_close_timers(etcdreg_client_t *c) {
  if (!c->closing || c->timers_closing) return;
  for (etcdreg_request_t *r = c->requests; r; r = r->next)
    if (etcdreg_timer_entry_active(&r->timer)) return;
  if (etcdreg__watch_busy(c) || etcdreg__keepalive_busy(c)) return;
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
  etcdreg_timerq_remove(&c->timers, &c->reconnect_timer);
  /* Every call completes with ECANCELED from its channel, then the channels close. */
  for (etcdreg_conn_t *conn = c->conns; conn; conn = conn->next)
    etcdreg_grpc_channel_close(conn->channel, ETCDREG_ECANCELED, "client closed");
  etcdreg__cancel_waiting_requests(c);
  etcdreg__watch_close(c);
  etcdreg__keepalive_close(c);
  client_set_state(c, ETCDREG_STATE_CLOSED, 0, "closed by the application", "");
  etcdreg__client_maybe_close_timers(c);
  return 0;
}
