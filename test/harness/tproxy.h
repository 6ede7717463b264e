/*
 * tproxy.h - a small loopback TCP proxy for fault tests.
 *
 * Test-only code.  Depends on libuv only.
 *
 * The proxy runs on the caller's uv_loop_t (the same loop as the code under
 * test): no threads, no blocking calls.  All functions must be called from
 * the loop's thread.  It listens on 127.0.0.1:<ephemeral port> and forwards
 * each accepted connection to 127.0.0.1:<upstream_port> (a new upstream
 * connection per client connection).  Faults can be injected at any time:
 * cutting (FIN or RST) every current connection, blackholing bytes, refusing
 * new connections, and adding per-chunk latency.
 *
 * Behaviour common to all modes:
 *   - TCP_NODELAY is set on both sides of every pair.
 *   - Reading from the client starts only once the upstream connection is
 *     established; if the upstream connect fails, the client side is closed.
 *   - A read error or a failed write on either side closes the pair at once.
 *     EOF from one side closes the pair once the bytes already read from that
 *     side have been written to the other side (or dropped, see blackhole).
 *   - Every chunk is written with uv_write() from its own heap buffer, which
 *     is freed when the write completes or is cancelled.  There is no
 *     backpressure: a slow reader makes the proxy buffer without limit.
 */
#ifndef ETCDREG_TEST_TPROXY_H
#define ETCDREG_TEST_TPROXY_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { TPROXY_PASS, TPROXY_BLACKHOLE } tproxy_mode_t;

typedef struct tproxy tproxy_t;

/* Listen on 127.0.0.1:<ephemeral port> and forward each accepted connection
 * to 127.0.0.1:<upstream_port>.  Mode PASS, no latency, not refusing.
 * Returns 0 and sets *out, or a negative libuv error (*out is then NULL; a
 * listening handle that was already initialised is closed and freed from the
 * loop, so run the loop before uv_loop_close()). */
int tproxy_start(uv_loop_t *loop, int upstream_port, tproxy_t **out);

/* The listening port. */
int tproxy_port(const tproxy_t *p);

/* "127.0.0.1:<port>" into buf (truncated to len-1 characters, always
 * NUL-terminated when len > 0). */
void tproxy_endpoint(const tproxy_t *p, char *buf, size_t len);

/* Close every current connection pair at once (both sides; the client sees
 * EOF, or ECONNRESET if it had unread-by-the-proxy data in flight).  Bytes
 * still queued in the proxy are dropped.  New connections are still
 * accepted. */
void tproxy_cut(tproxy_t *p);

/* Like tproxy_cut(), but the client side is closed with RST
 * (uv_tcp_close_reset), so the client sees ECONNRESET.  The upstream side is
 * closed normally. */
void tproxy_reset(tproxy_t *p);

/* TPROXY_BLACKHOLE: keep connections open but silently drop every byte in
 * both directions from now on: bytes read are discarded and queued (delayed)
 * bytes are discarded instead of being written.  New connections are
 * accepted (and connected upstream) and blackholed too.  Writes already
 * handed to libuv cannot be recalled.  TPROXY_PASS restores forwarding for
 * bytes read from then on (dropped bytes are lost). */
void tproxy_set_mode(tproxy_t *p, tproxy_mode_t mode);

/* While refuse is non-zero, every newly accepted connection is closed at
 * once (the client typically sees its connect succeed, then EOF or
 * ECONNRESET).  Existing pairs are not affected. */
void tproxy_set_refuse(tproxy_t *p, int refuse);

/* Extra one-way latency in ms applied to each chunk read from then on, in
 * either direction (0 = none).  Order is always preserved: a chunk is never
 * written before the chunks read before it on the same direction. */
void tproxy_set_latency(tproxy_t *p, uint64_t ms);

/* Connections accepted on the listening socket, refused ones included. */
size_t tproxy_connections_accepted(const tproxy_t *p);
/* Pairs currently open (accepted, not refused, not yet closed). */
size_t tproxy_connections_open(const tproxy_t *p);
/* Bytes handed to uv_write() towards the upstream (client -> upstream)... */
uint64_t tproxy_bytes_up(const tproxy_t *p);
/* ...and towards the client (upstream -> client).  Dropped bytes are not
 * counted. */
uint64_t tproxy_bytes_down(const tproxy_t *p);

/* Close the listener and every pair.  cb (may be NULL) is called from the
 * loop, once every handle of the proxy is closed and the proxy is freed; p
 * must not be used after tproxy_close().  Calling it twice is an error. */
void tproxy_close(tproxy_t *p, void (*cb)(void *data), void *data);

#ifdef __cplusplus
}
#endif

#endif /* ETCDREG_TEST_TPROXY_H */
