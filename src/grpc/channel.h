/* grpc/channel: one HTTP/2 connection (nghttp2 over a transport) carrying gRPC calls.
 *
 * A call is one HTTP/2 stream: unary calls send one message and half-close; streaming
 * calls (Watch, LeaseKeepAlive) send messages as they come. Every call ends exactly once
 * through on_close, from the loop, never from inside the function that started or
 * cancelled it. Frames produced during one loop turn leave together, one write in flight.
 *
 * The channel is created connecting; calls may be started at once (they wait in nghttp2
 * until the connection is up). When the connection ends every open call completes with
 * ETCDREG_EUNAVAILABLE, saying whether its request may have reached the server. */
#ifndef ETCDREG_GRPC_CHANNEL_H
#define ETCDREG_GRPC_CHANNEL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "../transport/transport.h"
#include "framing.h"

typedef struct etcdreg_grpc_channel etcdreg_grpc_channel_t;
typedef struct etcdreg_grpc_call etcdreg_grpc_call_t;

/* An outgoing message: header + payload in one allocation; the payload is written by the
 * caller at etcdreg_grpc_outmsg_payload(). Sending hands ownership to the channel. */
typedef struct etcdreg_grpc_outmsg {
  struct etcdreg_grpc_outmsg *next;
  size_t len; /* prefix + payload */
  size_t off; /* bytes already handed to nghttp2 */
  uint8_t bytes[];
} etcdreg_grpc_outmsg_t;

etcdreg_grpc_outmsg_t *etcdreg_grpc_outmsg_new(size_t payload_len);
static inline uint8_t *etcdreg_grpc_outmsg_payload(etcdreg_grpc_outmsg_t *m) {
  return m->bytes + ETCDREG_GRPC_PREFIX;
}
void etcdreg_grpc_outmsg_free(etcdreg_grpc_outmsg_t *m);

typedef struct etcdreg_grpc_status {
  int code;            /* gRPC status (received or synthesized) */
  const char *message; /* server's grpc-message (decoded) or a local explanation; never NULL */
  int local;           /* 0, or the ETCDREG_E... the client itself decided (deadline, cancel,
                          connection lost, too large, protocol error) */
  int sent;            /* nonzero when the request may have reached the server */
  int never_connected; /* the connection failed before it was ever up */
} etcdreg_grpc_status_t;

typedef struct etcdreg_grpc_call_cbs {
  /* One whole response message, borrowed for the call. Return 0, or a negative code to
   * fail the call with it (e.g. a message that does not decode). */
  int (*on_message)(etcdreg_grpc_call_t *call, const uint8_t *msg, size_t len, void *data);
  /* Exactly once; the call is freed when it returns. */
  void (*on_close)(etcdreg_grpc_call_t *call, const etcdreg_grpc_status_t *st, void *data);
} etcdreg_grpc_call_cbs_t;

typedef struct etcdreg_grpc_metadata {
  const char *name; /* lowercase */
  const char *value;
} etcdreg_grpc_metadata_t;

typedef struct etcdreg_grpc_channel_options {
  const char *authority;    /* host:port for :authority */
  const char *scheme;       /* "http" or "https" */
  const char *user_agent;
  size_t max_recv_msg;      /* receive limit per message */
  uint32_t stream_window;   /* SETTINGS_INITIAL_WINDOW_SIZE */
  uint32_t conn_window;     /* connection receive window */
  /* HTTP/2 PING keepalive while calls are open: a ping after `keepalive_interval_ms`
   * without reading anything; no answer within `keepalive_timeout_ms` ends the
   * connection (ETCDREG_EUNAVAILABLE). 0 disables. */
  uint64_t keepalive_interval_ms;
  uint64_t keepalive_timeout_ms;
} etcdreg_grpc_channel_options_t;

typedef struct etcdreg_grpc_channel_cbs {
  /* The connection is up (transport connected, preface sent). */
  void (*on_ready)(etcdreg_grpc_channel_t *ch, void *data);
  /* The channel takes no new calls any more: the connection failed or ended, or the
   * server sent GOAWAY (then calls already running may still finish). Fires at most once. */
  void (*on_unusable)(etcdreg_grpc_channel_t *ch, int err, const char *why, void *data);
  /* Final: every call has completed and every handle is closed; the channel is freed. */
  void (*on_closed)(void *data);
} etcdreg_grpc_channel_cbs_t;

int etcdreg_grpc_channel_new(uv_loop_t *loop, const etcdreg_transport_config_t *tcfg,
                             const etcdreg_grpc_channel_options_t *opts,
                             const etcdreg_grpc_channel_cbs_t *cbs, void *data,
                             etcdreg_grpc_channel_t **out);

/* Nonzero while new calls can be started on this channel. */
int etcdreg_grpc_channel_usable(const etcdreg_grpc_channel_t *ch);
/* Nonzero once the connection is up. */
int etcdreg_grpc_channel_ready(const etcdreg_grpc_channel_t *ch);

/* Takes no new calls any more; calls already running finish normally, then the
 * connection closes (on_unusable does not fire: the owner decided). */
void etcdreg_grpc_channel_retire(etcdreg_grpc_channel_t *ch);

/* Ends the channel: every open call completes with `err` (reason `why`), then the
 * connection is closed and on_closed fires. Idempotent. */
void etcdreg_grpc_channel_close(etcdreg_grpc_channel_t *ch, int err, const char *why);

/* Starts a call to `path` ("/etcdserverpb.KV/Range"). `deadline_ms` is absolute loop
 * time (uv_now), 0 for none: it is sent as grpc-timeout and enforced locally. Metadata is
 * copied. Returns 0 and *out, or a negative code (then no callback fires). */
int etcdreg_grpc_call_start(etcdreg_grpc_channel_t *ch, const char *path,
                            const etcdreg_grpc_metadata_t *md, size_t md_count,
                            uint64_t deadline_ms, const etcdreg_grpc_call_cbs_t *cbs,
                            void *data, etcdreg_grpc_call_t **out);

/* Queues a message (ownership passes to the channel even on error). `end` half-closes
 * our side after it. 0, or ETCDREG_ECANCELED when the call already ended. */
int etcdreg_grpc_call_send(etcdreg_grpc_call_t *call, etcdreg_grpc_outmsg_t *msg, int end);

/* Ends the call early with `err` (ETCDREG_ECANCELED, ETCDREG_ETIMEDOUT, ...); sends
 * RST_STREAM(CANCEL). on_close fires later from the loop. No-op once it has ended. */
void etcdreg_grpc_call_cancel(etcdreg_grpc_call_t *call, int err, const char *why);

/* Nonzero when the request's HEADERS have been written (it may have reached the server). */
int etcdreg_grpc_call_sent(const etcdreg_grpc_call_t *call);

#endif
