/* etcdreg/client.h - an asynchronous etcd v3 client on the application's libuv loop.
 *
 * Threading: every function of this library must be called on the thread that runs the
 * client's loop, and every callback runs on that thread, from that loop. The library
 * starts no threads of its own. To hand work over from another thread use uv_async_t.
 *
 * Ownership: everything you pass in (keys, values, options, endpoint strings) is copied
 * before the call returns. Everything handed to a callback (results, key-values, messages)
 * is borrowed for the duration of that callback only: copy what you keep.
 *
 * Callbacks: a call that returns 0 fires its callback exactly once, later, from the loop
 * (never from inside the call). A call that returns a negative ETCDREG_E... code never
 * fires its callback. The status passed to a callback is 0 or a negative code from
 * etcdreg/error.h; on failure the result pointer is NULL and, while the callback runs,
 * etcdreg_request_grpc_status() and etcdreg_request_message() say what the server (or the
 * client itself) reported. */
#ifndef ETCDREG_CLIENT_H
#define ETCDREG_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "etcdreg/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ETCDREG_VERSION_MAJOR 0
#define ETCDREG_VERSION_MINOR 1
#define ETCDREG_VERSION_PATCH 0
#define ETCDREG_VERSION_STRING "0.1.0"

/* The library's version string ("0.1.0"), static. */
ETCDREG_EXTERN const char *etcdreg_version(void);

typedef struct etcdreg_client etcdreg_client_t;
typedef struct etcdreg_request etcdreg_request_t;

/* ------------------------------------------------------------------------------------ */
/* Options                                                                              */

/* Connection states reported to etcdreg_client_options_t.on_state. */
typedef enum {
  ETCDREG_STATE_IDLE = 0,         /* no connection yet: the first call connects */
  ETCDREG_STATE_CONNECTING = 1,   /* dialing an endpoint */
  ETCDREG_STATE_READY = 2,        /* connected; calls flow */
  ETCDREG_STATE_RECONNECTING = 3, /* the connection failed (err says why); backing off */
  ETCDREG_STATE_CLOSED = 4        /* etcdreg_client_close was called */
} etcdreg_conn_state_t;

/* A static name for a state ("ready", ...). */
ETCDREG_EXTERN const char *etcdreg_conn_state_name(etcdreg_conn_state_t state);

/* Connection state changes. `err` is 0 or why the connection failed, `detail` a
 * human-readable explanation, `endpoint` the endpoint concerned; both borrowed. */
typedef void (*etcdreg_state_cb)(etcdreg_client_t *client, etcdreg_conn_state_t state, int err,
                                 const char *detail, const char *endpoint, void *data);

typedef enum {
  ETCDREG_LOG_DEBUG = 0,
  ETCDREG_LOG_INFO = 1,
  ETCDREG_LOG_WARN = 2,
  ETCDREG_LOG_ERROR = 3
} etcdreg_log_level_t;

/* Log hook; `message` is borrowed. The library never prints by itself. */
typedef void (*etcdreg_log_cb)(etcdreg_log_level_t level, const char *message, void *data);

typedef struct etcdreg_client_options {
  /* NULL-terminated list of endpoints: "host:port", "http://host:port", "[::1]:port",
   * "unix:///path/to/socket", "https://host:port", "unixs:///path". Numeric addresses are used as they are; names are resolved
   * with uv_getaddrinfo. Required. When a connection fails the next one goes to the next
   * endpoint of the list. */
  const char *const *endpoints;
  uint64_t dial_timeout_ms;      /* connect timeout per attempt; default 5000 */
  uint64_t request_timeout_ms;   /* default deadline of each call; default 10000 */
  size_t max_recv_msg_bytes;     /* receive limit per response message; default 64 MiB */
  uint32_t stream_window_bytes;  /* HTTP/2 stream receive window; default 4 MiB */
  uint32_t conn_window_bytes;    /* HTTP/2 connection receive window; default 16 MiB */
  const char *user_agent;        /* default "grpc-c-etcdreg/<version>" */
  /* How many times a call that failed as unavailable is tried again (on the next
   * connection) when it provably never reached a server, or is a read. Always within
   * the call's deadline. Default 10; 0 disables. A write that may have reached the
   * server is never replayed: it fails with ETCDREG_EOUTCOMEUNKNOWN. Independently, a
   * call etcd refused as "too many requests" (refused before being applied) is retried
   * until its deadline. */
  int max_retries;
  /* Reconnect backoff after a failed connection: initial delay, growth factor, cap and
   * jitter (a fraction: 0.2 = +-20 %); reset once a connection is ready.
   * Defaults 100 ms, 1.6, 10 000 ms, 0.2. */
  uint64_t backoff_initial_ms;
  double backoff_multiplier;
  uint64_t backoff_max_ms;
  double backoff_jitter;
  /* HTTP/2 PING while calls or streams are open: after `keepalive_interval_ms` without
   * reading anything a ping is sent; no answer within `keepalive_timeout_ms` ends the
   * connection and the client reconnects. Defaults 30 000 and 10 000; an interval of 0
   * disables keepalive (a timeout of 0 means the default). Keep
   * the interval at or above the server's --grpc-keepalive-min-time (etcd: 5 s). */
  uint64_t keepalive_interval_ms;
  uint64_t keepalive_timeout_ms;
  /* Authentication: with a user name the client calls Authenticate first, sends the
   * token with every call and refreshes it when etcd says it is invalid or stale, then
   * retries the call once. NULL = no auth. Copied. */
  const char *username;
  const char *password;
  /* TLS (OpenSSL): used for "https://" endpoints (and "unixs://"), and for bare
   * "host:port" endpoints when a CA, certificate or server name is given. The server's
   * certificate is verified against `tls_ca_file` (PEM; NULL: the system trust store) and
   * its name against the endpoint's host or IP (or `tls_server_name`); ALPN h2 is
   * required. `tls_cert_file` + `tls_key_file` (PEM) give a client certificate for mutual
   * TLS. Failures: ETCDREG_ETLSUNKNOWNCA, ETCDREG_ETLSNAME, ETCDREG_ETLSEXPIRED,
   * ETCDREG_ETLSCERTREJECTED, ETCDREG_ETLSNOALPN, ETCDREG_ETLS. Files are read once, by
   * etcdreg_client_new. */
  const char *tls_ca_file;
  const char *tls_cert_file;
  const char *tls_key_file;
  const char *tls_server_name;
  /* UNSAFE: accept any server certificate (no verification at all): anyone on the path
   * can impersonate the server. For tests only. */
  int tls_insecure_skip_verify;
  etcdreg_state_cb on_state;     /* may be NULL */
  etcdreg_log_cb log;            /* may be NULL */
  void *callback_data;           /* passed to on_state and log */
} etcdreg_client_options_t;

/* Fills `opt` with the defaults above (endpoints NULL). */
ETCDREG_EXTERN void etcdreg_client_options_init(etcdreg_client_options_t *opt);

/* Creates a client on `loop`. Connects lazily, on the first call, to the first endpoint.
 * Returns 0 and sets *out, or ETCDREG_EINVAL for bad options (the message for the last
 * such failure is available from etcdreg_last_option_error()), or ETCDREG_ENOMEM. */
ETCDREG_EXTERN int etcdreg_client_new(uv_loop_t *loop, const etcdreg_client_options_t *opt,
                                      etcdreg_client_t **out);

/* A static, human-readable explanation of why the last etcdreg_client_new on this thread
 * rejected its options ("" when it did not). */
ETCDREG_EXTERN const char *etcdreg_last_option_error(void);

typedef void (*etcdreg_close_cb)(etcdreg_client_t *client, void *data);

/* Closes the client. Every pending call completes first with ETCDREG_ECANCELED (each
 * callback once), then `cb` fires (may be NULL; the client pointer is still valid inside
 * it, but closed) and the client is freed when `cb` returns. After this
 * returns, new calls fail with ETCDREG_ECLOSED; nothing fires after `cb`. Calling it twice
 * returns ETCDREG_ECLOSED the second time. */
ETCDREG_EXTERN int etcdreg_client_close(etcdreg_client_t *client, etcdreg_close_cb cb, void *data);

ETCDREG_EXTERN uv_loop_t *etcdreg_client_loop(const etcdreg_client_t *client);

/* The current connection state. */
ETCDREG_EXTERN etcdreg_conn_state_t etcdreg_client_state(const etcdreg_client_t *client);

/* ------------------------------------------------------------------------------------ */
/* Results                                                                              */

typedef struct etcdreg_header {
  uint64_t cluster_id;
  uint64_t member_id;
  int64_t revision;
  uint64_t raft_term;
} etcdreg_header_t;

typedef struct etcdreg_kv {
  const uint8_t *key;
  size_t key_len;
  const uint8_t *value;
  size_t value_len;
  int64_t create_revision;
  int64_t mod_revision;
  int64_t version;
  int64_t lease;
} etcdreg_kv_t;

typedef struct etcdreg_range_result {
  etcdreg_header_t header;
  const etcdreg_kv_t *kvs;
  size_t kv_count;
  int more;       /* more keys in the range than `limit` returned */
  int64_t count;  /* keys in the range */
} etcdreg_range_result_t;

typedef struct etcdreg_put_result {
  etcdreg_header_t header;
  const etcdreg_kv_t *prev_kv; /* with prev_kv set and a previous value; else NULL */
} etcdreg_put_result_t;

typedef struct etcdreg_delete_result {
  etcdreg_header_t header;
  int64_t deleted;
  const etcdreg_kv_t *prev_kvs; /* with prev_kv set */
  size_t prev_kv_count;
} etcdreg_delete_result_t;

typedef enum {
  ETCDREG_OP_RANGE = 0,
  ETCDREG_OP_PUT = 1,
  ETCDREG_OP_DELETE = 2,
  ETCDREG_OP_TXN = 3
} etcdreg_op_type_t;

typedef struct etcdreg_txn_result etcdreg_txn_result_t;

typedef struct etcdreg_op_result {
  etcdreg_op_type_t type;
  union {
    etcdreg_range_result_t range;
    etcdreg_put_result_t put;
    etcdreg_delete_result_t del;
    const etcdreg_txn_result_t *txn;
  } u;
} etcdreg_op_result_t;

struct etcdreg_txn_result {
  etcdreg_header_t header;
  int succeeded;                        /* every compare held: the success list ran */
  const etcdreg_op_result_t *responses; /* one per operation of the list that ran */
  size_t response_count;
};

typedef struct etcdreg_compact_result {
  etcdreg_header_t header;
} etcdreg_compact_result_t;

/* ------------------------------------------------------------------------------------ */
/* Requests                                                                             */

/* The gRPC status of the failed call (0..16): the server's grpc-status, or the one the
 * gRPC rules derive from an HTTP/2 reset or a non-gRPC HTTP answer; -1 when the client
 * itself ended the call (connection failure, local deadline, cancel, TLS). Only
 * meaningful inside the request's callback. */
ETCDREG_EXTERN int etcdreg_request_grpc_status(const etcdreg_request_t *req);
/* The server's message (grpc-message, percent-decoded) or the client's own explanation;
 * "" when there is none. Borrowed: valid inside the request's callback only. */
ETCDREG_EXTERN const char *etcdreg_request_message(const etcdreg_request_t *req);
/* Cancels a pending call: its callback fires later with ETCDREG_ECANCELED (unless the
 * result was already on its way, then it fires with that). A write that was already sent
 * may still have been applied by the server. Valid until the callback has run; a no-op
 * when the call has already completed but its callback has not yet run. */
ETCDREG_EXTERN void etcdreg_request_cancel(etcdreg_request_t *req);
/* The client the request belongs to. */
ETCDREG_EXTERN etcdreg_client_t *etcdreg_request_client(const etcdreg_request_t *req);

typedef void (*etcdreg_range_cb)(etcdreg_request_t *req, int status,
                                 const etcdreg_range_result_t *res, void *data);
typedef void (*etcdreg_put_cb)(etcdreg_request_t *req, int status,
                               const etcdreg_put_result_t *res, void *data);
typedef void (*etcdreg_delete_cb)(etcdreg_request_t *req, int status,
                                  const etcdreg_delete_result_t *res, void *data);
typedef void (*etcdreg_txn_cb)(etcdreg_request_t *req, int status,
                               const etcdreg_txn_result_t *res, void *data);
typedef void (*etcdreg_compact_cb)(etcdreg_request_t *req, int status,
                                   const etcdreg_compact_result_t *res, void *data);

typedef enum {
  ETCDREG_SORT_NONE = 0,
  ETCDREG_SORT_ASCEND = 1,
  ETCDREG_SORT_DESCEND = 2
} etcdreg_sort_order_t;

typedef enum {
  ETCDREG_SORT_BY_KEY = 0,
  ETCDREG_SORT_BY_VERSION = 1,
  ETCDREG_SORT_BY_CREATE = 2,
  ETCDREG_SORT_BY_MOD = 3,
  ETCDREG_SORT_BY_VALUE = 4
} etcdreg_sort_target_t;

/* Options of a range read. Zeroed means: the single key, latest revision, linearizable. */
typedef struct etcdreg_range_opts {
  int prefix;                /* every key starting with `key` (range_end is ignored) */
  const void *range_end;     /* [key, range_end); "\0" (length 1) means "to the end" */
  size_t range_end_len;
  int64_t limit;             /* 0 = no limit */
  int64_t revision;          /* 0 = latest */
  int keys_only;
  int count_only;
  int serializable;          /* served by the member without a quorum read */
  etcdreg_sort_order_t sort_order;
  etcdreg_sort_target_t sort_target;
  int64_t min_mod_revision, max_mod_revision;       /* 0 = no bound */
  int64_t min_create_revision, max_create_revision; /* 0 = no bound */
  uint64_t timeout_ms;       /* 0 = the client's request timeout */
} etcdreg_range_opts_t;

typedef struct etcdreg_put_opts {
  int64_t lease;      /* attach to this lease; 0 = none */
  int prev_kv;        /* return the previous key-value */
  int ignore_value;   /* keep the current value (only the lease changes) */
  int ignore_lease;   /* keep the current lease */
  uint64_t timeout_ms;
} etcdreg_put_opts_t;

typedef struct etcdreg_delete_opts {
  int prefix;
  const void *range_end;
  size_t range_end_len;
  int prev_kv;
  uint64_t timeout_ms;
} etcdreg_delete_opts_t;

/* Each returns 0 and (when req_out is not NULL) a handle valid until the callback has
 * run, or ETCDREG_EINVAL (bad arguments), ETCDREG_ECLOSED (client closing or closed),
 * ETCDREG_ENOMEM. `opts` may be NULL for defaults. Errors delivered to the callback
 * include ETCDREG_ETIMEDOUT, ETCDREG_EUNAVAILABLE (connection failed and the request
 * provably did not reach the server), ETCDREG_EOUTCOMEUNKNOWN (a write was sent but the
 * connection failed before its answer), ETCDREG_ECANCELED, ETCDREG_ECOMPACTED,
 * ETCDREG_EFUTUREREV, ETCDREG_ETOOLARGE, ETCDREG_EPERM, ETCDREG_ENOLEADER. */
ETCDREG_EXTERN int etcdreg_range(etcdreg_client_t *c, const void *key, size_t key_len,
                                 const etcdreg_range_opts_t *opts, etcdreg_range_cb cb,
                                 void *data, etcdreg_request_t **req_out);
ETCDREG_EXTERN int etcdreg_put(etcdreg_client_t *c, const void *key, size_t key_len,
                               const void *value, size_t value_len,
                               const etcdreg_put_opts_t *opts, etcdreg_put_cb cb, void *data,
                               etcdreg_request_t **req_out);
ETCDREG_EXTERN int etcdreg_delete(etcdreg_client_t *c, const void *key, size_t key_len,
                                  const etcdreg_delete_opts_t *opts, etcdreg_delete_cb cb,
                                  void *data, etcdreg_request_t **req_out);

/* Transactions. */
typedef enum {
  ETCDREG_CMP_VERSION = 0,
  ETCDREG_CMP_CREATE = 1,  /* create revision; 0 = the key does not exist */
  ETCDREG_CMP_MOD = 2,     /* mod revision */
  ETCDREG_CMP_VALUE = 3,
  ETCDREG_CMP_LEASE = 4
} etcdreg_compare_target_t;

typedef enum {
  ETCDREG_CMP_EQUAL = 0,
  ETCDREG_CMP_GREATER = 1,
  ETCDREG_CMP_LESS = 2,
  ETCDREG_CMP_NOT_EQUAL = 3
} etcdreg_compare_result_t;

typedef struct etcdreg_compare {
  etcdreg_compare_target_t target;
  etcdreg_compare_result_t result;
  const void *key;
  size_t key_len;
  int prefix;               /* compare every key with this prefix */
  const void *range_end;    /* or over [key, range_end) */
  size_t range_end_len;
  int64_t number;           /* version, create/mod revision or lease, by target */
  const void *value;        /* for ETCDREG_CMP_VALUE */
  size_t value_len;
} etcdreg_compare_t;

typedef struct etcdreg_txn etcdreg_txn_t;

typedef struct etcdreg_txn_op {
  etcdreg_op_type_t type;
  const void *key;
  size_t key_len;
  const void *value;        /* ETCDREG_OP_PUT */
  size_t value_len;
  const etcdreg_range_opts_t *range;  /* ETCDREG_OP_RANGE options, may be NULL */
  const etcdreg_put_opts_t *put;      /* ETCDREG_OP_PUT options, may be NULL */
  const etcdreg_delete_opts_t *del;   /* ETCDREG_OP_DELETE options, may be NULL */
  const etcdreg_txn_t *txn;           /* ETCDREG_OP_TXN: a nested transaction */
} etcdreg_txn_op_t;

struct etcdreg_txn {
  const etcdreg_compare_t *compares;
  size_t compare_count;
  const etcdreg_txn_op_t *success;
  size_t success_count;
  const etcdreg_txn_op_t *failure;
  size_t failure_count;
  uint64_t timeout_ms;      /* top level only */
};

/* Each list may hold at most 128 entries (etcd's default --max-txn-ops); more is
 * ETCDREG_EINVAL here rather than a round trip. Nesting depth is limited to 16. */
ETCDREG_EXTERN int etcdreg_txn(etcdreg_client_t *c, const etcdreg_txn_t *txn, etcdreg_txn_cb cb,
                               void *data, etcdreg_request_t **req_out);

/* Compacts the history up to `revision`. `physical`: answer once the compaction is
 * physically applied. */
ETCDREG_EXTERN int etcdreg_compact(etcdreg_client_t *c, int64_t revision, int physical,
                                   uint64_t timeout_ms, etcdreg_compact_cb cb, void *data,
                                   etcdreg_request_t **req_out);

/* Writes the end of the range of keys starting with `prefix` into `out` (room for
 * max(prefix_len, 1) bytes): the prefix with its last byte below 0xff incremented after dropping
 * trailing 0xff bytes, or "\0" for an all-0xff or empty prefix. Returns the length. */
ETCDREG_EXTERN size_t etcdreg_prefix_end(const void *prefix, size_t prefix_len, uint8_t *out);

#ifdef __cplusplus
}
#endif
#endif
