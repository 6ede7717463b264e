/*
 * tproxy.c - a small loopback TCP proxy for fault tests (see tproxy.h).
 *
 * Structure: one listening handle; one tp_pair_t per accepted connection,
 * holding the client handle, the upstream handle and one tp_dir_t per
 * direction.  A direction owns a FIFO of delayed chunks and a timer armed for
 * the head chunk's due time.  With no latency and an empty queue a chunk is
 * written straight away.  Every handle's data points at its pair (or at the
 * proxy for the listener); a pair is freed when its last handle's close
 * callback has run, and the proxy when tproxy_close() was called, the
 * listener is closed and no pair is left.
 */
#include "tproxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TP_READ_SIZE 65536
#define TP_BACKLOG 128

typedef struct tp_pair tp_pair_t;

typedef struct tp_chunk {
  struct tp_chunk *next;
  uint64_t due; /* loop time (ms) at which it may be written */
  size_t len;
  char *data;
} tp_chunk_t;

typedef struct tp_dir {
  tp_pair_t *pair;
  uv_tcp_t *src, *dst;
  tp_chunk_t *head, *tail;
  uv_timer_t timer;
  size_t writes_inflight;
  int eof; /* src sent EOF: close the pair once drained */
} tp_dir_t;

struct tp_pair {
  tproxy_t *proxy;
  tp_pair_t *prev, *next;
  uv_tcp_t client, upstream;
  uv_connect_t connect_req;
  tp_dir_t up, down;  /* up: client -> upstream; down: upstream -> client */
  int handles;        /* initialised handles whose close callback has not run */
  int upstream_init;  /* upstream handle and both timers initialised */
  int counted;        /* counted in proxy->open */
  int closing;
};

typedef struct tp_write {
  uv_write_t req;
  tp_dir_t *dir;
  char *data;
} tp_write_t;

struct tproxy {
  uv_loop_t *loop;
  uv_tcp_t listener;
  int listener_open;
  int port, upstream_port;
  tproxy_mode_t mode;
  int refuse;
  uint64_t latency_ms;
  size_t accepted, open;
  uint64_t bytes_up, bytes_down;
  tp_pair_t *pairs;
  int closing;
  void (*close_cb)(void *data);
  void *close_data;
};

static void pair_close(tp_pair_t *pair, int reset);

/* ---- teardown ---------------------------------------------------------- */

static void proxy_maybe_finish(tproxy_t *p) {
  if (!p->closing || p->listener_open || p->pairs != NULL) return;
  void (*cb)(void *) = p->close_cb;
  void *data = p->close_data;
  free(p);
  if (cb != NULL) cb(data);
}

static void on_listener_closed(uv_handle_t *h) {
  tproxy_t *p = h->data;
  p->listener_open = 0;
  proxy_maybe_finish(p);
}

static void dir_free_chunks(tp_dir_t *dir) {
  tp_chunk_t *c = dir->head;
  while (c != NULL) {
    tp_chunk_t *next = c->next;
    free(c->data);
    free(c);
    c = next;
  }
  dir->head = dir->tail = NULL;
}

static void on_pair_handle_closed(uv_handle_t *h) {
  tp_pair_t *pair = h->data;
  if (--pair->handles > 0) return;
  tproxy_t *p = pair->proxy;
  dir_free_chunks(&pair->up);
  dir_free_chunks(&pair->down);
  if (pair->prev != NULL)
    pair->prev->next = pair->next;
  else
    p->pairs = pair->next;
  if (pair->next != NULL) pair->next->prev = pair->prev;
  free(pair);
  proxy_maybe_finish(p);
}

/* Start closing every handle of the pair (idempotent).  Queued chunks are
 * freed with the pair; pending writes are cancelled by libuv. */
static void pair_close(tp_pair_t *pair, int reset) {
  if (pair->closing) return;
  pair->closing = 1;
  if (pair->counted) {
    pair->counted = 0;
    pair->proxy->open--;
  }
  if (!reset || uv_tcp_close_reset(&pair->client, on_pair_handle_closed) != 0)
    uv_close((uv_handle_t *)&pair->client, on_pair_handle_closed);
  if (pair->upstream_init) {
    uv_close((uv_handle_t *)&pair->upstream, on_pair_handle_closed);
    uv_close((uv_handle_t *)&pair->up.timer, on_pair_handle_closed);
    uv_close((uv_handle_t *)&pair->down.timer, on_pair_handle_closed);
  }
}

/* ---- forwarding -------------------------------------------------------- */

/* EOF seen on dir's source and everything read from it has been written (or
 * dropped): close the pair. */
static void dir_check_done(tp_dir_t *dir) {
  if (dir->eof && dir->head == NULL && dir->writes_inflight == 0) pair_close(dir->pair, 0);
}

static void on_write(uv_write_t *req, int status) {
  tp_write_t *w = (tp_write_t *)req;
  tp_dir_t *dir = w->dir;
  free(w->data);
  free(w);
  dir->writes_inflight--;
  if (dir->pair->closing) return;
  if (status < 0) {
    pair_close(dir->pair, 0);
    return;
  }
  dir_check_done(dir);
}

/* Write data (ownership taken) to dir's destination.  0, or -1 after closing
 * the pair. */
static int dir_write(tp_dir_t *dir, char *data, size_t len) {
  tp_pair_t *pair = dir->pair;
  tp_write_t *w = malloc(sizeof(*w));
  if (w == NULL) {
    free(data);
    pair_close(pair, 0);
    return -1;
  }
  w->dir = dir;
  w->data = data;
  uv_buf_t b = uv_buf_init(data, (unsigned int)len);
  int r = uv_write(&w->req, (uv_stream_t *)dir->dst, &b, 1, on_write);
  if (r != 0) {
    free(data);
    free(w);
    pair_close(pair, 0);
    return -1;
  }
  dir->writes_inflight++;
  if (dir == &pair->up)
    pair->proxy->bytes_up += len;
  else
    pair->proxy->bytes_down += len;
  return 0;
}

static void on_dir_timer(uv_timer_t *t);

/* Write (or drop, in blackhole mode) every due chunk from the head; arm the
 * timer for the first one not yet due. */
static void dir_flush(tp_dir_t *dir) {
  tp_pair_t *pair = dir->pair;
  tproxy_t *p = pair->proxy;
  uint64_t now = uv_now(p->loop);
  tp_chunk_t *c;
  while ((c = dir->head) != NULL && !pair->closing) {
    if (c->due > now) {
      uv_timer_start(&dir->timer, on_dir_timer, c->due - now, 0);
      return;
    }
    dir->head = c->next;
    if (dir->head == NULL) dir->tail = NULL;
    char *data = c->data;
    size_t len = c->len;
    free(c);
    if (p->mode == TPROXY_BLACKHOLE)
      free(data);
    else if (dir_write(dir, data, len) != 0)
      return;
  }
  if (!pair->closing) dir_check_done(dir);
}

static void on_dir_timer(uv_timer_t *t) {
  tp_pair_t *pair = t->data;
  dir_flush(t == &pair->up.timer ? &pair->up : &pair->down);
}

/* A chunk read from dir's source (ownership of data taken). */
static void dir_push(tp_dir_t *dir, char *data, size_t len) {
  tproxy_t *p = dir->pair->proxy;
  if (p->latency_ms == 0 && dir->head == NULL) {
    dir_write(dir, data, len);
    return;
  }
  tp_chunk_t *c = malloc(sizeof(*c));
  if (c == NULL) {
    free(data);
    pair_close(dir->pair, 0);
    return;
  }
  c->next = NULL;
  c->due = uv_now(p->loop) + p->latency_ms;
  c->len = len;
  c->data = data;
  if (dir->tail != NULL) {
    dir->tail->next = c; /* the timer is already armed for the head */
    dir->tail = c;
  } else {
    dir->head = dir->tail = c;
    dir_flush(dir);
  }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  buf->base = malloc(TP_READ_SIZE);
  buf->len = buf->base != NULL ? TP_READ_SIZE : 0;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  tp_pair_t *pair = s->data;
  tp_dir_t *dir = s == (uv_stream_t *)&pair->client ? &pair->up : &pair->down;
  if (nread > 0 && !pair->closing && pair->proxy->mode == TPROXY_PASS) {
    dir_push(dir, buf->base, (size_t)nread); /* takes the buffer */
    return;
  }
  free(buf->base);
  if (nread >= 0 || pair->closing) return;
  if (nread == UV_EOF) {
    uv_read_stop(s);
    dir->eof = 1;
    dir_check_done(dir);
  } else {
    pair_close(pair, 0);
  }
}

/* ---- connections ------------------------------------------------------- */

static void on_upstream_connect(uv_connect_t *req, int status) {
  tp_pair_t *pair = req->data;
  if (pair->closing) return; /* includes UV_ECANCELED */
  if (status < 0) {
    pair_close(pair, 0);
    return;
  }
  uv_tcp_nodelay(&pair->upstream, 1);
  if (uv_read_start((uv_stream_t *)&pair->client, on_alloc, on_read) != 0 ||
      uv_read_start((uv_stream_t *)&pair->upstream, on_alloc, on_read) != 0)
    pair_close(pair, 0);
}

static void on_connection(uv_stream_t *server, int status) {
  tproxy_t *p = server->data;
  if (status < 0 || p->closing) return;
  tp_pair_t *pair = calloc(1, sizeof(*pair));
  if (pair == NULL) return; /* the connection stays in the backlog */
  pair->proxy = p;
  if (uv_tcp_init(p->loop, &pair->client) != 0) {
    free(pair);
    return;
  }
  pair->client.data = pair;
  pair->handles = 1;
  pair->next = p->pairs;
  if (p->pairs != NULL) p->pairs->prev = pair;
  p->pairs = pair;
  if (uv_accept(server, (uv_stream_t *)&pair->client) != 0) {
    pair_close(pair, 0);
    return;
  }
  p->accepted++;
  if (p->refuse) {
    pair_close(pair, 0);
    return;
  }
  uv_tcp_nodelay(&pair->client, 1);
  if (uv_tcp_init(p->loop, &pair->upstream) != 0) {
    pair_close(pair, 0);
    return;
  }
  /* uv_timer_init cannot fail. */
  uv_timer_init(p->loop, &pair->up.timer);
  uv_timer_init(p->loop, &pair->down.timer);
  pair->upstream_init = 1;
  pair->handles += 3;
  pair->upstream.data = pair->up.timer.data = pair->down.timer.data = pair;
  pair->up.pair = pair->down.pair = pair;
  pair->up.src = pair->down.dst = &pair->client;
  pair->up.dst = pair->down.src = &pair->upstream;
  pair->counted = 1;
  p->open++;

  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", p->upstream_port, &addr);
  pair->connect_req.data = pair;
  if (uv_tcp_connect(&pair->connect_req, &pair->upstream, (const struct sockaddr *)&addr,
                     on_upstream_connect) != 0)
    pair_close(pair, 0);
}

/* ---- API --------------------------------------------------------------- */

int tproxy_start(uv_loop_t *loop, int upstream_port, tproxy_t **out) {
  *out = NULL;
  if (loop == NULL || upstream_port <= 0 || upstream_port > 65535) return UV_EINVAL;
  tproxy_t *p = calloc(1, sizeof(*p));
  if (p == NULL) return UV_ENOMEM;
  p->loop = loop;
  p->upstream_port = upstream_port;
  p->mode = TPROXY_PASS;
  int r = uv_tcp_init(loop, &p->listener);
  if (r != 0) {
    free(p);
    return r;
  }
  p->listener.data = p;
  p->listener_open = 1;

  struct sockaddr_in addr;
  struct sockaddr_storage name;
  int namelen = (int)sizeof(name);
  uv_ip4_addr("127.0.0.1", 0, &addr);
  r = uv_tcp_bind(&p->listener, (const struct sockaddr *)&addr, 0);
  if (r == 0) r = uv_listen((uv_stream_t *)&p->listener, TP_BACKLOG, on_connection);
  if (r == 0) r = uv_tcp_getsockname(&p->listener, (struct sockaddr *)&name, &namelen);
  if (r == 0 && name.ss_family != AF_INET) r = UV_EAFNOSUPPORT;
  if (r != 0) {
    p->closing = 1; /* freed by on_listener_closed, no callback */
    uv_close((uv_handle_t *)&p->listener, on_listener_closed);
    return r;
  }
  p->port = ntohs(((const struct sockaddr_in *)&name)->sin_port);
  *out = p;
  return 0;
}

int tproxy_port(const tproxy_t *p) { return p->port; }

void tproxy_endpoint(const tproxy_t *p, char *buf, size_t len) {
  if (len > 0) snprintf(buf, len, "127.0.0.1:%d", p->port);
}

static void proxy_close_pairs(tproxy_t *p, int reset) {
  for (tp_pair_t *pair = p->pairs; pair != NULL; pair = pair->next) pair_close(pair, reset);
}

void tproxy_cut(tproxy_t *p) { proxy_close_pairs(p, 0); }

void tproxy_reset(tproxy_t *p) { proxy_close_pairs(p, 1); }

void tproxy_set_mode(tproxy_t *p, tproxy_mode_t mode) { p->mode = mode; }

void tproxy_set_refuse(tproxy_t *p, int refuse) { p->refuse = refuse != 0; }

void tproxy_set_latency(tproxy_t *p, uint64_t ms) { p->latency_ms = ms; }

size_t tproxy_connections_accepted(const tproxy_t *p) { return p->accepted; }

size_t tproxy_connections_open(const tproxy_t *p) { return p->open; }

uint64_t tproxy_bytes_up(const tproxy_t *p) { return p->bytes_up; }

uint64_t tproxy_bytes_down(const tproxy_t *p) { return p->bytes_down; }

void tproxy_close(tproxy_t *p, void (*cb)(void *data), void *data) {
  if (p->closing) return;
  p->closing = 1;
  p->close_cb = cb;
  p->close_data = data;
  uv_close((uv_handle_t *)&p->listener, on_listener_closed);
  proxy_close_pairs(p, 0);
}
