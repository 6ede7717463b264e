/* Stream transport on uv_tcp_t (and uv_pipe_t for unix:// endpoints): non-blocking connect with a dial timeout, TCP_NODELAY,
 * numeric addresses without a resolver, names through uv_getaddrinfo (first usable
 * address; the client rotates endpoints, not addresses). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcdreg/error.h"
#include "transport.h"

enum { TS_RESOLVING, TS_CONNECTING, TS_OPEN, TS_ENDED, TS_CLOSING };

typedef struct {
  etcdreg_transport_t base;
  uv_loop_t *loop;
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } h;
  char *unix_path; /* set for unix:// endpoints */
  uv_timer_t dial_timer;
  uv_getaddrinfo_t resolve;
  uv_connect_t connect;
  uv_write_t write_req;
  etcdreg_transport_write_cb write_cb;
  void *write_cb_data;
  int state;
  int tcp_inited;
  int handles_open;  /* handles whose close callback is still due */
  int requests_open; /* getaddrinfo/connect requests still owed a callback */
  int resolving;
  uint16_t port;
  uint64_t dial_ms;
  int pending_err; /* an early failure delivered on the next loop turn */
  char pending_detail[192];
  char *host;
  char read_buf[64 * 1024];
} tcp_transport_t;

int etcdreg_transport_map_uv_error(int uv_err) {
  switch (uv_err) {
  case UV_ENOMEM: return ETCDREG_ENOMEM;
  case UV_ECANCELED: return ETCDREG_ECANCELED;
  case UV_EAI_NONAME:
  case UV_EAI_AGAIN:
  case UV_EAI_FAIL:
  case UV_EAI_NODATA: return ETCDREG_EDNS;
  default: return ETCDREG_EUNAVAILABLE;
  }
}

static void tcp_maybe_free(tcp_transport_t *t) {
  if (t->state != TS_CLOSING || t->handles_open || t->requests_open) return;
  etcdreg_transport_cbs_t cbs = t->base.cbs;
  void *data = t->base.data;
  free(t->host);
  free(t->unix_path);
  free(t);
  if (cbs.on_closed) cbs.on_closed(data);
}

static void tcp_handle_closed(uv_handle_t *h) {
  tcp_transport_t *t = h->data;
  t->handles_open--;
  tcp_maybe_free(t);
}

static void tcp_fail_connect(tcp_transport_t *t, int status, const char *detail) {
  if (t->state >= TS_OPEN) return;
  t->state = TS_ENDED;
  uv_timer_stop(&t->dial_timer);
  if (t->base.cbs.on_connect) t->base.cbs.on_connect(&t->base, status, detail, t->base.data);
}

static void tcp_on_dial_timer(uv_timer_t *timer);

/* Reports a failure found synchronously on the next loop turn, through the dial timer. */
static void tcp_fail_later(tcp_transport_t *t, int status, const char *detail) {
  t->pending_err = status;
  snprintf(t->pending_detail, sizeof(t->pending_detail), "%s", detail);
  t->state = TS_CONNECTING;
  uv_timer_stop(&t->dial_timer);
  uv_timer_start(&t->dial_timer, tcp_on_dial_timer, 0, 0);
}

static void tcp_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  tcp_transport_t *t = h->data;
  *buf = uv_buf_init(t->read_buf, sizeof(t->read_buf));
}

static void tcp_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  tcp_transport_t *t = s->data;
  if (nread > 0) {
    if (t->state == TS_OPEN && t->base.cbs.on_read)
      t->base.cbs.on_read(&t->base, (const uint8_t *)buf->base, (size_t)nread, t->base.data);
    return;
  }
  if (nread == 0) return; /* EAGAIN */
  uv_read_stop(s);
  if (t->state != TS_OPEN) return;
  t->state = TS_ENDED;
  char detail[128];
  if (nread == UV_EOF)
    snprintf(detail, sizeof(detail), "connection closed by the server");
  else
    snprintf(detail, sizeof(detail), "connection failed: %s", uv_strerror((int)nread));
  if (t->base.cbs.on_end) t->base.cbs.on_end(&t->base, ETCDREG_EUNAVAILABLE, detail, t->base.data);
}

static void tcp_on_connect(uv_connect_t *req, int status) {
  tcp_transport_t *t = req->data;
  t->requests_open--;
  if (t->state == TS_CLOSING) {
    tcp_maybe_free(t);
    return;
  }
  if (t->state != TS_CONNECTING) return;
  if (status < 0) {
    char detail[192];
    if (t->unix_path)
      snprintf(detail, sizeof(detail), "connect to unix socket %s failed: %s", t->unix_path, uv_strerror(status));
    else
      snprintf(detail, sizeof(detail), "connect to %s:%u failed: %s", t->host, t->port, uv_strerror(status));
    tcp_fail_connect(t, etcdreg_transport_map_uv_error(status), detail);
    return;
  }
  uv_timer_stop(&t->dial_timer);
  if (!t->unix_path) uv_tcp_nodelay(&t->h.tcp, 1);
  int rv = uv_read_start(&t->h.stream, tcp_on_alloc, tcp_on_read);
  if (rv) {
    tcp_fail_connect(t, ETCDREG_EUNAVAILABLE, uv_strerror(rv));
    return;
  }
  t->state = TS_OPEN;
  if (t->base.cbs.on_connect) t->base.cbs.on_connect(&t->base, 0, "", t->base.data);
}

/* Starts connecting to one address; on immediate failure reports it on the next turn. */
static void tcp_connect_addr(tcp_transport_t *t, const struct sockaddr *addr) {
  int rv = uv_tcp_init(t->loop, &t->h.tcp);
  if (rv == 0) {
    t->h.handle.data = t;
    t->tcp_inited = 1;
    t->handles_open++;
    t->connect.data = t;
    rv = uv_tcp_connect(&t->connect, &t->h.tcp, addr, tcp_on_connect);
  }
  if (rv) {
    char detail[192];
    snprintf(detail, sizeof(detail), "connect to %s:%u failed: %s", t->host, t->port, uv_strerror(rv));
    tcp_fail_later(t, etcdreg_transport_map_uv_error(rv), detail);
    return;
  }
  t->requests_open++;
  t->state = TS_CONNECTING;
}

static void tcp_on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  tcp_transport_t *t = req->data;
  t->requests_open--;
  t->resolving = 0;
  if (t->state != TS_RESOLVING) {
    if (res) uv_freeaddrinfo(res);
    tcp_maybe_free(t);
    return;
  }
  if (status < 0) {
    char detail[192];
    snprintf(detail, sizeof(detail), "cannot resolve %s: %s", t->host, uv_strerror(status));
    tcp_fail_connect(t, etcdreg_transport_map_uv_error(status), detail);
    return;
  }
  struct addrinfo *ai = res;
  while (ai && ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ai = ai->ai_next;
  if (!ai) {
    uv_freeaddrinfo(res);
    tcp_fail_connect(t, ETCDREG_EDNS, "no IPv4 or IPv6 address for the host");
    return;
  }
  struct sockaddr_storage ss;
  memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
  if (ss.ss_family == AF_INET) ((struct sockaddr_in *)&ss)->sin_port = htons(t->port);
  else ((struct sockaddr_in6 *)&ss)->sin6_port = htons(t->port);
  uv_freeaddrinfo(res);
  tcp_connect_addr(t, (struct sockaddr *)&ss);
}

static void tcp_on_dial_timer(uv_timer_t *timer) {
  tcp_transport_t *t = timer->data;
  if (t->state >= TS_OPEN) return;
  if (t->pending_err) {
    tcp_fail_connect(t, t->pending_err, t->pending_detail);
    return;
  }
  char detail[192];
  snprintf(detail, sizeof(detail), "connect to %s:%u timed out after %llu ms", t->host, t->port,
           (unsigned long long)t->dial_ms);
  tcp_fail_connect(t, ETCDREG_EUNAVAILABLE, detail);
}

static void tcp_on_write(uv_write_t *req, int status) {
  tcp_transport_t *t = req->data;
  etcdreg_transport_write_cb cb = t->write_cb;
  t->write_cb = NULL;
  if (cb) cb(&t->base, status < 0 ? ETCDREG_EUNAVAILABLE : 0, t->write_cb_data);
}

static int tcp_write(etcdreg_transport_t *base, const uv_buf_t *bufs, unsigned nbufs,
                     etcdreg_transport_write_cb cb, void *cb_data) {
  tcp_transport_t *t = (tcp_transport_t *)base;
  if (t->state != TS_OPEN) return ETCDREG_EUNAVAILABLE;
  if (t->write_cb) return ETCDREG_EBUSY;
  t->write_cb = cb;
  t->write_cb_data = cb_data;
  t->write_req.data = t;
  int rv = uv_write(&t->write_req, &t->h.stream, bufs, nbufs, tcp_on_write);
  if (rv) {
    t->write_cb = NULL;
    return ETCDREG_EUNAVAILABLE;
  }
  return 0;
}

static void tcp_close(etcdreg_transport_t *base) {
  tcp_transport_t *t = (tcp_transport_t *)base;
  if (t->state == TS_CLOSING) return;
  t->state = TS_CLOSING;
  if (t->resolving) uv_cancel((uv_req_t *)&t->resolve);
  if (t->tcp_inited) {
    /* Cancels a pending connect and write; their callbacks run before the close callback. */
    uv_close(&t->h.handle, tcp_handle_closed);
    t->tcp_inited = 0;
  }
  uv_close((uv_handle_t *)&t->dial_timer, tcp_handle_closed);
}

static const etcdreg_transport_vtable_t tcp_vtable = {tcp_write, tcp_close};

int etcdreg_tcp_transport_new(uv_loop_t *loop, const etcdreg_transport_config_t *cfg,
                              const etcdreg_transport_cbs_t *cbs, void *data,
                              etcdreg_transport_t **out) {
  if (!cfg || !out || !cbs) return ETCDREG_EINVAL;
  if (!cfg->unix_path && (!cfg->host || !cfg->host[0] || !cfg->port)) return ETCDREG_EINVAL;
  tcp_transport_t *t = calloc(1, sizeof(*t));
  if (!t) return ETCDREG_ENOMEM;
  t->host = strdup(cfg->host ? cfg->host : "localhost");
  if (!t->host) {
    free(t);
    return ETCDREG_ENOMEM;
  }
  t->base.vt = &tcp_vtable;
  t->base.cbs = *cbs;
  t->base.data = data;
  t->loop = loop;
  t->port = cfg->port;
  t->dial_ms = cfg->dial_timeout_ms ? cfg->dial_timeout_ms : 5000;

  uv_timer_init(loop, &t->dial_timer);
  t->dial_timer.data = t;
  t->handles_open = 1;
  uv_timer_start(&t->dial_timer, tcp_on_dial_timer, t->dial_ms, 0);

  struct sockaddr_storage ss;
  if (cfg->unix_path) {
    t->unix_path = strdup(cfg->unix_path);
    if (!t->unix_path || uv_pipe_init(loop, &t->h.pipe, 0) != 0) {
      tcp_fail_later(t, ETCDREG_ENOMEM, "cannot create a unix socket handle");
    } else {
      t->h.handle.data = t;
      t->tcp_inited = 1;
      t->handles_open++;
      t->connect.data = t;
      uv_pipe_connect(&t->connect, &t->h.pipe, t->unix_path, tcp_on_connect);
      t->requests_open++;
      t->state = TS_CONNECTING;
    }
  } else if (uv_ip4_addr(cfg->host, cfg->port, (struct sockaddr_in *)&ss) == 0 ||
      uv_ip6_addr(cfg->host, cfg->port, (struct sockaddr_in6 *)&ss) == 0) {
    tcp_connect_addr(t, (struct sockaddr *)&ss);
  } else {
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    t->resolve.data = t;
    t->state = TS_RESOLVING;
    int rv = uv_getaddrinfo(loop, &t->resolve, tcp_on_resolved, cfg->host, NULL, &hints);
    if (rv) {
      char detail[192];
      snprintf(detail, sizeof(detail), "cannot resolve %s: %s", t->host, uv_strerror(rv));
      tcp_fail_later(t, etcdreg_transport_map_uv_error(rv), detail);
    } else {
      t->requests_open++;
      t->resolving = 1;
    }
  }
  *out = &t->base;
  return 0;
}
