/* Unit tests for the loopback fault-injection proxy (test/harness/tproxy.c).  No etcd: a
 * libuv echo server, the proxy in front of it and libuv clients, all on one loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "tproxy.h"

/* ---- echo server ------------------------------------------------------- */

typedef struct echo_conn {
  uv_tcp_t tcp;
  struct echo_conn *prev, *next;
  struct echo *echo;
  int closing;
} echo_conn_t;

typedef struct echo {
  uv_tcp_t listener;
  int listener_open;
  int port;
  echo_conn_t *conns;
  size_t accepted, open; /* open: connections not yet fully closed */
  uint64_t bytes;
} echo_t;

typedef struct wreq {
  uv_write_t req;
  char *data;
} wreq_t;

static void on_wreq_done(uv_write_t *req, int status) {
  (void)status;
  wreq_t *w = (wreq_t *)req;
  free(w->data);
  free(w);
}

/* Write a copy of data[0..len) to s. */
static int stream_write_copy(uv_stream_t *s, const void *data, size_t len) {
  wreq_t *w = malloc(sizeof(*w));
  char *copy = malloc(len);
  if (w == NULL || copy == NULL) {
    free(w);
    free(copy);
    return UV_ENOMEM;
  }
  memcpy(copy, data, len);
  w->data = copy;
  uv_buf_t b = uv_buf_init(copy, (unsigned int)len);
  int r = uv_write(&w->req, s, &b, 1, on_wreq_done);
  if (r != 0) {
    free(copy);
    free(w);
  }
  return r;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  buf->base = malloc(suggested);
  buf->len = buf->base != NULL ? suggested : 0;
}

static void on_echo_conn_closed(uv_handle_t *h) {
  echo_conn_t *c = h->data;
  echo_t *e = c->echo;
  if (c->prev != NULL)
    c->prev->next = c->next;
  else
    e->conns = c->next;
  if (c->next != NULL) c->next->prev = c->prev;
  e->open--;
  free(c);
}

static void echo_conn_close(echo_conn_t *c) {
  if (c->closing) return;
  c->closing = 1;
  uv_close((uv_handle_t *)&c->tcp, on_echo_conn_closed);
}

static void on_echo_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  echo_conn_t *c = s->data;
  if (nread > 0) {
    c->echo->bytes += (uint64_t)nread;
    if (stream_write_copy(s, buf->base, (size_t)nread) != 0) echo_conn_close(c);
  } else if (nread < 0) {
    echo_conn_close(c);
  }
  free(buf->base);
}

static void on_echo_connection(uv_stream_t *server, int status) {
  echo_t *e = server->data;
  if (status < 0) return;
  echo_conn_t *c = calloc(1, sizeof(*c));
  assert_non_null(c);
  c->echo = e;
  assert_int_equal(uv_tcp_init(server->loop, &c->tcp), 0);
  c->tcp.data = c;
  c->next = e->conns;
  if (e->conns != NULL) e->conns->prev = c;
  e->conns = c;
  e->open++;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    echo_conn_close(c);
    return;
  }
  e->accepted++;
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_echo_read) != 0) echo_conn_close(c);
}

static void echo_start(uv_loop_t *loop, echo_t *e) {
  memset(e, 0, sizeof(*e));
  assert_int_equal(uv_tcp_init(loop, &e->listener), 0);
  e->listener.data = e;
  e->listener_open = 1;
  struct sockaddr_in addr;
  struct sockaddr_storage name;
  int namelen = (int)sizeof(name);
  uv_ip4_addr("127.0.0.1", 0, &addr);
  assert_int_equal(uv_tcp_bind(&e->listener, (const struct sockaddr *)&addr, 0), 0);
  assert_int_equal(uv_listen((uv_stream_t *)&e->listener, 128, on_echo_connection), 0);
  assert_int_equal(uv_tcp_getsockname(&e->listener, (struct sockaddr *)&name, &namelen), 0);
  e->port = ntohs(((struct sockaddr_in *)&name)->sin_port);
}

static void on_echo_listener_closed(uv_handle_t *h) {
  echo_t *e = h->data;
  e->listener_open = 0;
}

static void echo_drop_all(echo_t *e) {
  for (echo_conn_t *c = e->conns; c != NULL; c = c->next) echo_conn_close(c);
}

static void echo_stop(echo_t *e) {
  if (e->listener_open && !uv_is_closing((uv_handle_t *)&e->listener))
    uv_close((uv_handle_t *)&e->listener, on_echo_listener_closed);
  echo_drop_all(e);
}

/* ---- clients ----------------------------------------------------------- */

#define CONNECT_PENDING 1

typedef struct client {
  uv_tcp_t tcp;
  uv_connect_t creq;
  int init, closed;
  int connect_status; /* CONNECT_PENDING, 0 or a libuv error */
  int read_status;    /* 0 while reading, else UV_EOF or the error */
  char *rx;
  size_t rx_len, rx_cap;
} client_t;

static void on_client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  client_t *c = s->data;
  if (nread > 0) {
    if (c->rx_len + (size_t)nread > c->rx_cap) {
      size_t cap = c->rx_cap ? c->rx_cap : 4096;
      while (cap < c->rx_len + (size_t)nread) cap *= 2;
      c->rx = realloc(c->rx, cap);
      assert_non_null(c->rx);
      c->rx_cap = cap;
    }
    memcpy(c->rx + c->rx_len, buf->base, (size_t)nread);
    c->rx_len += (size_t)nread;
  } else if (nread < 0) {
    c->read_status = (int)nread;
    uv_read_stop(s);
  }
  free(buf->base);
}

static void on_client_connect(uv_connect_t *req, int status) {
  client_t *c = req->data;
  c->connect_status = status;
  if (status == 0)
    assert_int_equal(uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_client_read), 0);
}

static void client_connect(uv_loop_t *loop, client_t *c, int port) {
  assert_false(c->init);
  assert_int_equal(uv_tcp_init(loop, &c->tcp), 0);
  c->init = 1;
  c->tcp.data = c;
  c->creq.data = c;
  c->connect_status = CONNECT_PENDING;
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", port, &addr);
  assert_int_equal(
      uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&addr, on_client_connect), 0);
}

static void client_write(client_t *c, const void *data, size_t len) {
  assert_int_equal(stream_write_copy((uv_stream_t *)&c->tcp, data, len), 0);
}

static void on_client_closed(uv_handle_t *h) {
  client_t *c = h->data;
  c->closed = 1;
}

static void client_close(client_t *c) {
  if (c->init && !uv_is_closing((uv_handle_t *)&c->tcp))
    uv_close((uv_handle_t *)&c->tcp, on_client_closed);
}

/* ---- fixture ----------------------------------------------------------- */

#define N_CLIENTS 4

typedef struct fx {
  uv_loop_t loop;
  uv_timer_t tick; /* keeps uv_run(UV_RUN_ONCE) from blocking forever */
  echo_t echo;
  tproxy_t *proxy;
  int proxy_freed;
  client_t c[N_CLIENTS];
} fx_t;

static void on_tick(uv_timer_t *t) { (void)t; }

static void on_proxy_freed(void *data) {
  fx_t *f = data;
  f->proxy_freed++;
}

typedef int (*pred_fn)(fx_t *f, const void *arg);

/* Run the loop until pred holds or timeout_ms elapse; returns pred's final value. */
static int run_until(fx_t *f, pred_fn pred, const void *arg, uint64_t timeout_ms) {
  uint64_t deadline = uv_hrtime() + timeout_ms * 1000000u;
  uv_timer_start(&f->tick, on_tick, 5, 5);
  while (!(pred != NULL && pred(f, arg)) && uv_hrtime() < deadline) uv_run(&f->loop, UV_RUN_ONCE);
  uv_timer_stop(&f->tick);
  return pred != NULL && pred(f, arg);
}

static void run_for(fx_t *f, uint64_t ms) { (void)run_until(f, NULL, NULL, ms); }

static int pred_connected(fx_t *f, const void *arg) {
  (void)f;
  return ((const client_t *)arg)->connect_status != CONNECT_PENDING;
}
static int pred_read_done(fx_t *f, const void *arg) {
  (void)f;
  return ((const client_t *)arg)->read_status != 0;
}
static int pred_proxy_freed(fx_t *f, const void *arg) {
  (void)arg;
  return f->proxy_freed > 0;
}
static int pred_echo_idle(fx_t *f, const void *arg) {
  (void)arg;
  return f->echo.open == 0;
}
static int pred_proxy_idle(fx_t *f, const void *arg) {
  (void)arg;
  return f->proxy != NULL && tproxy_connections_open(f->proxy) == 0;
}

typedef struct {
  const client_t *c;
  size_t len;
} rx_wait_t;
static int pred_rx_len(fx_t *f, const void *arg) {
  (void)f;
  const rx_wait_t *w = arg;
  return w->c->rx_len >= w->len || w->c->read_status != 0;
}

/* Wait until c has received at least len bytes in total. */
static void wait_rx(fx_t *f, client_t *c, size_t len, uint64_t timeout_ms) {
  rx_wait_t w = {c, len};
  if (!run_until(f, pred_rx_len, &w, timeout_ms))
    fail_msg("timed out: received %zu of %zu bytes", c->rx_len, len);
  assert_int_equal(c->read_status, 0);
  assert_int_equal(c->rx_len, len);
}

static void connect_ok(fx_t *f, client_t *c) {
  client_connect(&f->loop, c, tproxy_port(f->proxy));
  assert_true(run_until(f, pred_connected, c, 5000));
  assert_int_equal(c->connect_status, 0);
}

/* Send s on c and expect it echoed (c's rx grows by strlen(s)). */
static void echo_roundtrip(fx_t *f, client_t *c, const char *s) {
  size_t before = c->rx_len, n = strlen(s);
  client_write(c, s, n);
  wait_rx(f, c, before + n, 5000);
  assert_memory_equal(c->rx + before, s, n);
}

static void expect_closed_by_proxy(fx_t *f, client_t *c) {
  assert_true(run_until(f, pred_read_done, c, 5000));
  if (c->read_status != UV_EOF && c->read_status != UV_ECONNRESET)
    fail_msg("expected EOF or ECONNRESET, got %s", uv_err_name(c->read_status));
}

static int setup(void **state) {
  fx_t *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  assert_int_equal(uv_timer_init(&f->loop, &f->tick), 0);
  echo_start(&f->loop, &f->echo);
  assert_int_equal(tproxy_start(&f->loop, f->echo.port, &f->proxy), 0);
  assert_non_null(f->proxy);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx_t *f = *state;
  for (int i = 0; i < N_CLIENTS; i++) client_close(&f->c[i]);
  if (f->proxy != NULL) tproxy_close(f->proxy, on_proxy_freed, f);
  echo_stop(&f->echo);
  uv_close((uv_handle_t *)&f->tick, NULL);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  int ok = 1;
  if (f->proxy != NULL && f->proxy_freed != 1) {
    fprintf(stderr, "proxy close callback ran %d times\n", f->proxy_freed);
    ok = 0;
  }
  if (f->echo.open != 0 || f->echo.listener_open) ok = 0;
  for (int i = 0; i < N_CLIENTS; i++) {
    if (f->c[i].init && !f->c[i].closed) ok = 0;
    free(f->c[i].rx);
  }
  int r = uv_loop_close(&f->loop);
  if (r != 0) {
    fprintf(stderr, "uv_loop_close: %s\n", uv_err_name(r));
    uv_print_all_handles(&f->loop, stderr);
    ok = 0;
  }
  free(f);
  return ok ? 0 : -1;
}

/* ---- tests ------------------------------------------------------------- */

static void test_start_errors_and_endpoint(void **state) {
  fx_t *f = *state;
  tproxy_t *p = (tproxy_t *)1;
  assert_int_equal(tproxy_start(&f->loop, 0, &p), UV_EINVAL);
  assert_null(p);
  assert_int_equal(tproxy_start(&f->loop, 70000, &p), UV_EINVAL);
  assert_null(p);

  int port = tproxy_port(f->proxy);
  assert_true(port > 0 && port <= 65535);
  assert_int_not_equal(port, f->echo.port);
  char buf[64], want[64];
  snprintf(want, sizeof(want), "127.0.0.1:%d", port);
  tproxy_endpoint(f->proxy, buf, sizeof(buf));
  assert_string_equal(buf, want);
  char small[6];
  tproxy_endpoint(f->proxy, small, sizeof(small));
  assert_string_equal(small, "127.0");
  assert_int_equal(tproxy_connections_accepted(f->proxy), 0);
  assert_int_equal(tproxy_connections_open(f->proxy), 0);
  assert_int_equal(tproxy_bytes_up(f->proxy), 0);
  assert_int_equal(tproxy_bytes_down(f->proxy), 0);
}

static void test_pass_echo_and_counters(void **state) {
  fx_t *f = *state;
  connect_ok(f, &f->c[0]);
  echo_roundtrip(f, &f->c[0], "hello");
  echo_roundtrip(f, &f->c[0], "world!");
  assert_int_equal(tproxy_connections_accepted(f->proxy), 1);
  assert_int_equal(tproxy_connections_open(f->proxy), 1);
  assert_int_equal(tproxy_bytes_up(f->proxy), 11);
  assert_int_equal(tproxy_bytes_down(f->proxy), 11);

  connect_ok(f, &f->c[1]);
  echo_roundtrip(f, &f->c[1], "second");
  echo_roundtrip(f, &f->c[0], "x");
  assert_int_equal(tproxy_connections_accepted(f->proxy), 2);
  assert_int_equal(tproxy_connections_open(f->proxy), 2);
  assert_int_equal(tproxy_bytes_up(f->proxy), 18);
  assert_int_equal(tproxy_bytes_down(f->proxy), 18);
  assert_int_equal(f->echo.accepted, 2);
}

#define MIB (1024u * 1024u)

static void test_pass_1mib(void **state) {
  fx_t *f = *state;
  char *payload = malloc(MIB);
  assert_non_null(payload);
  for (size_t i = 0; i < MIB; i++) payload[i] = (char)((i * 7 + i / 251) & 0xff);
  connect_ok(f, &f->c[0]);
  client_write(&f->c[0], payload, MIB);
  wait_rx(f, &f->c[0], MIB, 20000);
  assert_memory_equal(f->c[0].rx, payload, MIB);
  assert_int_equal(tproxy_bytes_up(f->proxy), MIB);
  assert_int_equal(tproxy_bytes_down(f->proxy), MIB);
  assert_int_equal(f->echo.bytes, MIB);
  free(payload);
}

static void test_latency(void **state) {
  fx_t *f = *state;
  client_t *c = &f->c[0];
  connect_ok(f, c);
  echo_roundtrip(f, c, "warm");

  const uint64_t lat = 100;
  tproxy_set_latency(f->proxy, lat);
  uint64_t t0 = uv_hrtime();
  client_write(c, "a", 1);
  run_for(f, 20);
  client_write(c, "b", 1);
  client_write(c, "c", 1);
  wait_rx(f, c, 4 + 3, 5000);
  uint64_t elapsed_ms = (uv_hrtime() - t0) / 1000000u;
  assert_memory_equal(c->rx + 4, "abc", 3);
  /* Round trip crosses the proxy twice; assert only the one-way lower bound. */
  if (elapsed_ms < lat) fail_msg("round trip took %llu ms < latency %llu ms",
                                 (unsigned long long)elapsed_ms, (unsigned long long)lat);

  /* Lowering the latency never reorders: "1" (delayed 150 ms) stays before "2". */
  tproxy_set_latency(f->proxy, 150);
  client_write(c, "1", 1);
  run_for(f, 20);
  tproxy_set_latency(f->proxy, 0);
  client_write(c, "2", 1);
  wait_rx(f, c, 9, 5000);
  assert_memory_equal(c->rx + 7, "12", 2);

  /* Many chunks in flight with latency in both directions stay in order. */
  tproxy_set_latency(f->proxy, 20);
  size_t n = 256 * 1024;
  char *payload = malloc(n);
  assert_non_null(payload);
  for (size_t i = 0; i < n; i++) payload[i] = (char)(i % 253);
  for (size_t off = 0; off < n; off += 16 * 1024) {
    client_write(c, payload + off, 16 * 1024);
    run_for(f, 2);
  }
  wait_rx(f, c, 9 + n, 10000);
  assert_memory_equal(c->rx + 9, payload, n);
  free(payload);
  assert_int_equal(tproxy_bytes_up(f->proxy), 9 + n);
  assert_int_equal(tproxy_bytes_down(f->proxy), 9 + n);

  tproxy_set_latency(f->proxy, 0);
  echo_roundtrip(f, c, "fast again");
}

static void test_blackhole(void **state) {
  fx_t *f = *state;
  client_t *c = &f->c[0];
  connect_ok(f, c);
  echo_roundtrip(f, c, "ping");

  tproxy_set_mode(f->proxy, TPROXY_BLACKHOLE);
  client_write(c, "dropped", 7);
  run_for(f, 200);
  assert_int_equal(c->rx_len, 4);
  assert_int_equal(c->read_status, 0);
  assert_int_equal(f->echo.bytes, 4);
  assert_int_equal(tproxy_bytes_up(f->proxy), 4);
  assert_int_equal(tproxy_connections_open(f->proxy), 1);

  /* A new connection is accepted (and connected upstream) but blackholed too. */
  client_t *c2 = &f->c[1];
  connect_ok(f, c2);
  client_write(c2, "also dropped", 12);
  run_for(f, 200);
  assert_int_equal(c2->rx_len, 0);
  assert_int_equal(c2->read_status, 0);
  assert_int_equal(f->echo.bytes, 4);
  assert_int_equal(tproxy_connections_accepted(f->proxy), 2);
  assert_int_equal(tproxy_connections_open(f->proxy), 2);

  /* Back to PASS: new bytes flow, the dropped ones are gone. */
  tproxy_set_mode(f->proxy, TPROXY_PASS);
  echo_roundtrip(f, c, "pong");
  assert_memory_equal(c->rx, "pingpong", 8);
  echo_roundtrip(f, c2, "hi");
  assert_int_equal(c2->rx_len, 2);
  assert_int_equal(tproxy_bytes_up(f->proxy), 10);
  assert_int_equal(tproxy_bytes_down(f->proxy), 10);
}

static void test_blackhole_drops_delayed_bytes(void **state) {
  fx_t *f = *state;
  client_t *c = &f->c[0];
  connect_ok(f, c);
  tproxy_set_latency(f->proxy, 100);
  client_write(c, "queued", 6);
  run_for(f, 30); /* read by the proxy, waiting in its queue */
  tproxy_set_mode(f->proxy, TPROXY_BLACKHOLE);
  run_for(f, 200);
  assert_int_equal(f->echo.bytes, 0);
  assert_int_equal(c->rx_len, 0);
  tproxy_set_mode(f->proxy, TPROXY_PASS);
  tproxy_set_latency(f->proxy, 0);
  echo_roundtrip(f, c, "after");
  assert_int_equal(f->echo.bytes, 5);
}

static void cut_or_reset(fx_t *f, int reset) {
  client_t *c = &f->c[0];
  connect_ok(f, c);
  echo_roundtrip(f, c, "before");
  client_t *c2 = &f->c[1];
  connect_ok(f, c2);
  echo_roundtrip(f, c2, "other");
  assert_int_equal(tproxy_connections_open(f->proxy), 2);

  if (reset)
    tproxy_reset(f->proxy);
  else
    tproxy_cut(f->proxy);
  assert_int_equal(tproxy_connections_open(f->proxy), 0);
  expect_closed_by_proxy(f, c);
  expect_closed_by_proxy(f, c2);
  if (reset && c->read_status != UV_ECONNRESET)
    fprintf(stderr, "note: reset gave %s, not ECONNRESET\n", uv_err_name(c->read_status));
  /* The upstream side of both pairs was closed too. */
  assert_true(run_until(f, pred_echo_idle, NULL, 5000));

  /* New connections still work. */
  client_t *c3 = &f->c[2];
  connect_ok(f, c3);
  echo_roundtrip(f, c3, "after");
  assert_int_equal(tproxy_connections_accepted(f->proxy), 3);
  assert_int_equal(tproxy_connections_open(f->proxy), 1);
}

static void test_cut(void **state) { cut_or_reset(*state, 0); }

static void test_reset(void **state) {
  fx_t *f = *state;
  cut_or_reset(f, 1);
  assert_int_equal(f->c[0].read_status, UV_ECONNRESET); /* RST on an idle socket */
}

static void test_cut_with_pending_delayed_bytes(void **state) {
  fx_t *f = *state;
  client_t *c = &f->c[0];
  connect_ok(f, c);
  tproxy_set_latency(f->proxy, 500);
  client_write(c, "never", 5);
  run_for(f, 30);
  tproxy_cut(f->proxy);
  expect_closed_by_proxy(f, c);
  assert_true(run_until(f, pred_echo_idle, NULL, 5000));
  assert_int_equal(f->echo.bytes, 0);
}

static void test_refuse(void **state) {
  fx_t *f = *state;
  client_t *c = &f->c[0];
  connect_ok(f, c);
  echo_roundtrip(f, c, "kept");

  tproxy_set_refuse(f->proxy, 1);
  client_t *c2 = &f->c[1];
  client_connect(&f->loop, c2, tproxy_port(f->proxy));
  assert_true(run_until(f, pred_connected, c2, 5000));
  if (c2->connect_status == 0) expect_closed_by_proxy(f, c2);
  assert_int_equal(tproxy_connections_accepted(f->proxy), 2);
  assert_int_equal(tproxy_connections_open(f->proxy), 1);
  assert_int_equal(f->echo.accepted, 1); /* never connected upstream */
  /* Existing pairs are not affected. */
  echo_roundtrip(f, c, "still");

  tproxy_set_refuse(f->proxy, 0);
  client_t *c3 = &f->c[2];
  connect_ok(f, c3);
  echo_roundtrip(f, c3, "welcome");
  assert_int_equal(tproxy_connections_accepted(f->proxy), 3);
  assert_int_equal(tproxy_connections_open(f->proxy), 2);
}

static void test_client_close_closes_upstream(void **state) {
  fx_t *f = *state;
  client_t *c = &f->c[0];
  connect_ok(f, c);
  echo_roundtrip(f, c, "bye");
  assert_int_equal(f->echo.open, 1);
  client_close(c);
  assert_true(run_until(f, pred_echo_idle, NULL, 5000));
  assert_true(run_until(f, pred_proxy_idle, NULL, 5000));
}

static void test_upstream_close_closes_client(void **state) {
  fx_t *f = *state;
  client_t *c = &f->c[0];
  connect_ok(f, c);
  echo_roundtrip(f, c, "hi");
  echo_drop_all(&f->echo);
  expect_closed_by_proxy(f, c);
  assert_true(run_until(f, pred_proxy_idle, NULL, 5000));
}

static void test_upstream_refused(void **state) {
  fx_t *f = *state;
  /* A proxy in front of a port nobody listens on: the echo listener's port once closed. */
  echo_t tmp;
  echo_start(&f->loop, &tmp);
  int dead_port = tmp.port;
  uv_close((uv_handle_t *)&tmp.listener, on_echo_listener_closed);
  run_for(f, 10);
  assert_false(tmp.listener_open);

  tproxy_t *p = NULL;
  assert_int_equal(tproxy_start(&f->loop, dead_port, &p), 0);
  client_t *c = &f->c[0];
  client_connect(&f->loop, c, tproxy_port(p));
  assert_true(run_until(f, pred_connected, c, 5000));
  assert_int_equal(c->connect_status, 0);
  expect_closed_by_proxy(f, c);
  assert_int_equal(tproxy_connections_accepted(p), 1);
  assert_int_equal(tproxy_connections_open(p), 0);
  assert_int_equal(tproxy_bytes_up(p), 0);

  tproxy_close(p, NULL, NULL); /* NULL callback is allowed; teardown checks it was freed */
}

static void test_close_with_open_connections(void **state) {
  fx_t *f = *state;
  client_t *c = &f->c[0], *c2 = &f->c[1];
  connect_ok(f, c);
  connect_ok(f, c2);
  echo_roundtrip(f, c, "one");
  /* Bytes sitting in the latency queues in both directions when the proxy closes. */
  tproxy_set_latency(f->proxy, 1000);
  client_write(c, "queued", 6);
  client_write(c2, "queued too", 10);
  run_for(f, 30);
  /* Usually a connection whose upstream connect is still pending: one loop iteration lets
   * the proxy accept it and start connecting upstream. */
  client_connect(&f->loop, &f->c[2], tproxy_port(f->proxy));
  uv_run(&f->loop, UV_RUN_NOWAIT);

  tproxy_t *p = f->proxy;
  tproxy_close(p, on_proxy_freed, f);
  f->proxy = NULL;
  assert_int_equal(f->proxy_freed, 0); /* only from the loop */
  assert_true(run_until(f, pred_proxy_freed, NULL, 5000));
  assert_int_equal(f->proxy_freed, 1);
  expect_closed_by_proxy(f, c);
  expect_closed_by_proxy(f, c2);
  assert_true(run_until(f, pred_echo_idle, NULL, 5000));
  assert_int_equal(f->echo.bytes, 3);
}

static void test_close_from_callback_of_run(void **state) {
  /* Closing with nothing open: the callback still runs from the loop. */
  fx_t *f = *state;
  tproxy_t *p = f->proxy;
  f->proxy = NULL;
  tproxy_close(p, on_proxy_freed, f);
  assert_int_equal(f->proxy_freed, 0);
  assert_true(run_until(f, pred_proxy_freed, NULL, 5000));
  assert_int_equal(f->proxy_freed, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_start_errors_and_endpoint, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pass_echo_and_counters, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pass_1mib, setup, teardown),
      cmocka_unit_test_setup_teardown(test_latency, setup, teardown),
      cmocka_unit_test_setup_teardown(test_blackhole, setup, teardown),
      cmocka_unit_test_setup_teardown(test_blackhole_drops_delayed_bytes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cut, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reset, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cut_with_pending_delayed_bytes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_refuse, setup, teardown),
      cmocka_unit_test_setup_teardown(test_client_close_closes_upstream, setup, teardown),
      cmocka_unit_test_setup_teardown(test_upstream_close_closes_client, setup, teardown),
      cmocka_unit_test_setup_teardown(test_upstream_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_close_with_open_connections, setup, teardown),
      cmocka_unit_test_setup_teardown(test_close_from_callback_of_run, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
