/* Internals of the etcd layer shared by its modules (client, request, auth, kv, ...). */
#ifndef ETCDREG_ETCD_INTERNAL_H
#define ETCDREG_ETCD_INTERNAL_H

#include <protobuf-c/protobuf-c.h>

#include "../common/arena.h"
#include "../common/idmap.h"
#include "../common/timerq.h"
#include "../grpc/channel.h"
#include "etcd/api/etcdserverpb/rpc.pb-c.h"
#include "etcdreg/client.h"

typedef struct etcdreg_endpoint {
  char *host;       /* without brackets; NULL for unix sockets */
  uint16_t port;
  char *unix_path;  /* unix:// endpoints */
  char *authority;  /* as sent in :authority */
  char *text;       /* as the user wrote it, for messages */
  int tls;
} etcdreg_endpoint_t;

typedef struct etcdreg_conn etcdreg_conn_t; /* one channel and its bookkeeping */

typedef enum {
  REQ_RANGE,
  REQ_PUT,
  REQ_DELETE,
  REQ_TXN,
  REQ_COMPACT,
  REQ_AUTH
} etcdreg_req_kind_t;

/* How a request's decoded response becomes the user's callback. */
typedef void (*etcdreg_req_dispatch_fn)(etcdreg_request_t *req, int status,
                                        const ProtobufCMessage *resp);

/* A unary call with its retries. At any time it is in flight (call), parked (waiting for
 * a connection or a token; timer = its deadline), delayed (timer = next attempt), or
 * about to complete (pending_status; timer due now). */
struct etcdreg_request {
  etcdreg_client_t *client;
  etcdreg_grpc_call_t *call;
  const char *path;                /* static method path */
  uint8_t *payload;                /* the packed request, kept for retries */
  size_t payload_len;
  uint64_t deadline_ms;            /* absolute loop time for the whole request */
  int unavailable_attempts;        /* failed attempts that may be retried */
  int auth_retried;
  int no_auth;                     /* Authenticate itself */
  uint64_t token_gen;              /* which token the attempt carried */
  etcdreg_timer_entry_t timer;
  int parked, delayed;
  int pending_status;
  int last_error;                  /* for a deadline hit while waiting */
  char *last_message;
  etcdreg_req_kind_t kind;
  int is_write;                    /* not to be replayed once sent */
  const ProtobufCMessageDescriptor *resp_desc;
  ProtobufCMessage *resp;
  etcdreg_req_dispatch_fn dispatch;
  void (*user_cb)(void);           /* cast back by dispatch */
  void *data;
  int grpc_status;
  const char *message;             /* borrowed during the callback */
  int completing;
  etcdreg_request_t *prev, *next;            /* all requests of the client */
  etcdreg_request_t *park_prev, *park_next;  /* parked requests, FIFO */
};

/* The client's one Watch stream and its watchers (watch.c). */
typedef struct etcdreg_watch_mgr {
  etcdreg_grpc_call_t *call;
  int restarting;                  /* we cancelled the stream to open a fresh one */
  etcdreg_idmap_t by_id;
  struct etcdreg_watch *all;       /* live watchers */
  size_t count;
  int64_t next_id;
  int64_t *pending;                /* ids whose create awaits its answer, FIFO ring */
  size_t pending_cap, pending_head, pending_len;
  struct etcdreg_watch *ended_head, *ended_tail;
  etcdreg_timer_entry_t dispatch;  /* fires ended callbacks */
  etcdreg_timer_entry_t retry;     /* reopens the stream after a failure */
  int failures;
} etcdreg_watch_mgr_t;

/* The client's one LeaseKeepAlive stream and its keepers (keepalive.c). */
typedef struct etcdreg_keepalive_mgr {
  etcdreg_grpc_call_t *call;
  int restarting;
  etcdreg_idmap_t by_id;
  struct etcdreg_keepalive *all;
  size_t count;
  struct etcdreg_keepalive *ended_head, *ended_tail;
  etcdreg_timer_entry_t dispatch;
  etcdreg_timer_entry_t retry;
  int failures;
} etcdreg_keepalive_mgr_t;

struct etcdreg_client {
  uv_loop_t *loop;
  etcdreg_endpoint_t *endpoints;
  size_t endpoint_count;
  size_t endpoint_index;
  uint64_t dial_timeout_ms;
  uint64_t request_timeout_ms;
  size_t max_recv_msg;
  size_t max_send_msg;
  uint32_t stream_window, conn_window;
  uint64_t keepalive_interval_ms, keepalive_timeout_ms;
  uint64_t backoff_initial_ms, backoff_max_ms;
  double backoff_multiplier, backoff_jitter;
  int max_retries;
  char *user_agent;
  char *username, *password;
  etcdreg_tls_ctx_t *tls;          /* shared by TLS connections; NULL without TLS */
  char *tls_server_name;
  etcdreg_state_cb on_state;
  etcdreg_log_cb log;
  void *callback_data;

  etcdreg_conn_state_t state;
  etcdreg_conn_t *current;   /* the connection new calls go to */
  etcdreg_conn_t *conns;     /* every live connection (current and draining) */
  int failures;              /* consecutive failed connection attempts */
  uint64_t next_connect_at;  /* no new connection before this loop time */
  etcdreg_timer_entry_t reconnect_timer;

  /* auth */
  char *token;               /* NULL: none yet (or invalidated); "" when auth is off */
  uint64_t token_gen;
  etcdreg_request_t *auth_req;

  etcdreg_request_t *requests;
  size_t request_count;
  etcdreg_request_t *parked_head, *parked_tail;
  size_t parked_count;

  etcdreg_watch_mgr_t watch;
  etcdreg_keepalive_mgr_t keepalive;

  etcdreg_timerq_t timers;   /* retries, parked deadlines, reconnects: one uv timer */
  uint32_t rng;
  int closing;
  int timers_closing, timers_closed;
  etcdreg_close_cb close_cb;
  void *close_data;
};

/* ---- client.c ---- */
/* The channel for a new attempt: 0, ETCDREG_EBUSY (backing off: park and wait for
 * etcdreg__client_kick), ETCDREG_ECLOSED, ETCDREG_ENOMEM. */
int etcdreg__client_channel(etcdreg_client_t *c, etcdreg_grpc_channel_t **out);
/* Makes sure a reconnect is scheduled while requests wait. */
void etcdreg__client_want_connection(etcdreg_client_t *c);
void etcdreg__client_maybe_close_timers(etcdreg_client_t *c);
void etcdreg__log(etcdreg_client_t *c, etcdreg_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
uint32_t etcdreg__client_rand(etcdreg_client_t *c);

/* Opens a long-lived stream (Watch, LeaseKeepAlive) on the current connection, with the
 * token and `hasleader` metadata. 0 and *out; ETCDREG_EBUSY while there is no connection
 * or token yet (a reconnect or Authenticate is under way and etcdreg__client_kick will
 * call the stream hooks again); other errors. */
int etcdreg__stream_open(etcdreg_client_t *c, const char *path, const etcdreg_grpc_call_cbs_t *cbs,
                         void *data, uint64_t *token_gen, etcdreg_grpc_call_t **out);
/* Nonzero while streams want a connection (watchers or keepers exist). */
int etcdreg__streams_wanted(const etcdreg_client_t *c);
/* Gives up the current connection (e.g. its member lost its leader): the next one goes
 * to the next endpoint. */
void etcdreg__client_drop_connection(etcdreg_client_t *c, int err, const char *why);
/* A call or stream message succeeded: the reconnect backoff starts over. */
void etcdreg__client_note_success(etcdreg_client_t *c);
/* Delay before reopening a stream after its `failures`-th failure. */
uint64_t etcdreg__stream_backoff(etcdreg_client_t *c, int failures);

/* ---- watch.c / keepalive.c ---- */
void etcdreg__watch_init(etcdreg_client_t *c);
void etcdreg__watch_kick(etcdreg_client_t *c);
void etcdreg__watch_close(etcdreg_client_t *c);          /* client closing: end all */
void etcdreg__watch_fail_all(etcdreg_client_t *c, int status, const char *why);
int etcdreg__watch_busy(const etcdreg_client_t *c);     /* timer entries still due */
void etcdreg__watch_restart(etcdreg_client_t *c, const char *why);
void etcdreg__keepalive_restart(etcdreg_client_t *c, const char *why);
void etcdreg__keepalive_init(etcdreg_client_t *c);
void etcdreg__keepalive_kick(etcdreg_client_t *c);
void etcdreg__keepalive_close(etcdreg_client_t *c);
void etcdreg__keepalive_fail_all(etcdreg_client_t *c, int status, const char *why);
int etcdreg__keepalive_busy(const etcdreg_client_t *c);

/* ---- request.c ---- */
etcdreg_request_t *etcdreg__request_new(etcdreg_client_t *c, etcdreg_req_kind_t kind,
                                        int is_write, const ProtobufCMessageDescriptor *resp,
                                        etcdreg_req_dispatch_fn dispatch, void (*cb)(void),
                                        void *data);
void etcdreg__request_free(etcdreg_request_t *req);
/* Packs `msg` and makes the first attempt (or parks the request). On success the
 * request belongs to the client until its callback has run; on failure the caller frees
 * it and no callback fires. */
int etcdreg__request_start(etcdreg_client_t *c, etcdreg_request_t *req, const char *path,
                           const ProtobufCMessage *msg, uint64_t timeout_ms);
/* new + start in one: 0 and *req_out (may be NULL), or an error (nothing fires). */
int etcdreg__submit(etcdreg_client_t *c, etcdreg_req_kind_t kind, int is_write, const char *path,
                    const ProtobufCMessage *msg, const ProtobufCMessageDescriptor *resp_desc,
                    etcdreg_req_dispatch_fn dispatch, void (*cb)(void), void *data, uint64_t timeout_ms,
                    etcdreg_request_t **req_out);

/* Defines NAME, a dispatch function: converts the decoded PB_T response into a RES_T on an
 * arena with CONVERT, calls the user's CB_T with it, frees the arena. */
#define ETCDREG_DEFINE_DISPATCH(NAME, CB_T, RES_T, PB_T, CONVERT)                              \
  static void NAME(etcdreg_request_t *req, int status, const ProtobufCMessage *resp) {         \
    CB_T cb = (CB_T)req->user_cb;                                                             \
    if (status || !resp) {                                                                    \
      cb(req, status ? status : ETCDREG_EPROTO, NULL, req->data);                             \
      return;                                                                                 \
    }                                                                                         \
    etcdreg_arena_t a;                                                                        \
    etcdreg_arena_init(&a);                                                                   \
    RES_T res;                                                                                \
    int rv = CONVERT(&a, &res, (const PB_T *)resp);                                           \
    if (rv) cb(req, rv, NULL, req->data);                                                     \
    else cb(req, 0, &res, req->data);                                                         \
    etcdreg_arena_free(&a);                                                                   \
  }

/* Tries every parked request again (a connection came up, a token arrived). */
void etcdreg__client_kick(etcdreg_client_t *c);
/* Completes every parked request that needs a token with `status` (auth failed). */
void etcdreg__fail_parked_auth(etcdreg_client_t *c, int status, const char *message);
/* Completes every request with ECANCELED (client close). */
void etcdreg__cancel_waiting_requests(etcdreg_client_t *c);

/* ---- auth.c ---- */
/* Starts Authenticate unless it already runs. */
void etcdreg__auth_ensure(etcdreg_client_t *c);
/* Forgets the token of generation `gen` (etcd said it is invalid). */
void etcdreg__auth_invalidate(etcdreg_client_t *c, uint64_t gen);

/* ---- status_map.c ---- */
int etcdreg__map_grpc_status(int code, const char *message);

/* ---- endpoints (client.c) ---- */
int etcdreg__endpoint_parse(const char *s, etcdreg_endpoint_t *ep, char *why, size_t why_len);
void etcdreg__endpoint_free(etcdreg_endpoint_t *ep);

void etcdreg__header_from_pb(etcdreg_header_t *out, const Etcdserverpb__ResponseHeader *h);
/* A decoded key-value as the public struct (borrowing its bytes). */
void etcdreg__kv_from_pb(etcdreg_kv_t *out, const Mvccpb__KeyValue *kv);

#endif
