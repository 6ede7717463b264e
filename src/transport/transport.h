/* transport: a byte stream under the HTTP/2 channel.
 *
 * An implementation (TCP now, TLS over TCP later) connects, hands received bytes to
 * on_read, accepts one write of several buffers at a time and closes exactly once. All
 * callbacks run from the loop, never from inside the call that caused them. */
#ifndef ETCDREG_TRANSPORT_H
#define ETCDREG_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct etcdreg_transport etcdreg_transport_t;

typedef struct etcdreg_transport_cbs {
  /* Connected (status 0) or failed (ETCDREG_E..., `detail` says why). After a failure the
   * transport still has to be closed. */
  void (*on_connect)(etcdreg_transport_t *t, int status, const char *detail, void *data);
  /* Bytes received; borrowed for the duration of the callback. */
  void (*on_read)(etcdreg_transport_t *t, const uint8_t *buf, size_t len, void *data);
  /* The peer closed (EOF) or the connection failed; no more on_read. */
  void (*on_end)(etcdreg_transport_t *t, int status, const char *detail, void *data);
  /* Final: every handle is closed; the transport has been freed. */
  void (*on_closed)(void *data);
} etcdreg_transport_cbs_t;

typedef void (*etcdreg_transport_write_cb)(etcdreg_transport_t *t, int status, void *data);

typedef struct etcdreg_transport_vtable {
  /* Writes bufs in order; the buffers must stay valid until `cb`. One write at a time. */
  int (*write)(etcdreg_transport_t *t, const uv_buf_t *bufs, unsigned nbufs,
               etcdreg_transport_write_cb cb, void *cb_data);
  void (*close)(etcdreg_transport_t *t);
} etcdreg_transport_vtable_t;

struct etcdreg_transport {
  const etcdreg_transport_vtable_t *vt;
  etcdreg_transport_cbs_t cbs;
  void *data;
};

static inline int etcdreg_transport_write(etcdreg_transport_t *t, const uv_buf_t *bufs,
                                          unsigned nbufs, etcdreg_transport_write_cb cb,
                                          void *cb_data) {
  return t->vt->write(t, bufs, nbufs, cb, cb_data);
}
static inline void etcdreg_transport_close(etcdreg_transport_t *t) { t->vt->close(t); }

/* Where to connect. `host` is a numeric IPv4/IPv6 address (no resolver involved) or a
 * name resolved with uv_getaddrinfo. */
typedef struct etcdreg_tls_ctx etcdreg_tls_ctx_t;

typedef struct etcdreg_transport_config {
  const char *host;
  uint16_t port;
  const char *unix_path;  /* when set, a unix domain socket instead of host:port */
  uint64_t dial_timeout_ms;
  etcdreg_tls_ctx_t *tls; /* when set, TLS over the stream (tls.c) */
  const char *tls_server_name; /* name to verify and send as SNI; default: host */
} etcdreg_transport_config_t;

/* TLS settings shared by every connection of a client. */
typedef struct etcdreg_tls_options {
  const char *ca_file;        /* NULL: the system's trust store */
  const char *cert_file;      /* client certificate (PEM chain), for mutual TLS */
  const char *key_file;       /* its private key (PEM) */
  int insecure_skip_verify;   /* no verification at all: unsafe, for tests only */
} etcdreg_tls_options_t;

/* Builds the shared TLS context (loads CA, certificate and key now). 0 or an error code
 * with `err` filled. */
int etcdreg_tls_ctx_new(const etcdreg_tls_options_t *opts, etcdreg_tls_ctx_t **out, char *err, size_t errlen);
void etcdreg_tls_ctx_free(etcdreg_tls_ctx_t *ctx);

/* Starts a TLS connection: TCP (or unix) first, then the handshake; on_connect fires once
 * the handshake succeeded and h2 was negotiated, or with the TLS failure. */
int etcdreg_tls_transport_new(uv_loop_t *loop, const etcdreg_transport_config_t *cfg,
                              const etcdreg_transport_cbs_t *cbs, void *data,
                              etcdreg_transport_t **out);

/* Starts a TCP connection. Returns 0 and sets *out, or a negative code (nothing to close
 * then). Connection errors arrive through on_connect. */
int etcdreg_tcp_transport_new(uv_loop_t *loop, const etcdreg_transport_config_t *cfg,
                              const etcdreg_transport_cbs_t *cbs, void *data,
                              etcdreg_transport_t **out);

/* Maps a libuv error to an ETCDREG_E... code for connection failures. */
int etcdreg_transport_map_uv_error(int uv_err);

#endif
