/* Internals of the etcd layer shared by its modules (client, kv, ...). */
#ifndef ETCDREG_ETCD_INTERNAL_H
#define ETCDREG_ETCD_INTERNAL_H

#include <protobuf-c/protobuf-c.h>

#include "../common/arena.h"
#include "../common/timerq.h"
#include "../grpc/channel.h"
#include "etcd/api/etcdserverpb/rpc.pb-c.h"
#include "etcdreg/client.h"

typedef struct etcdreg_endpoint {
  char *host;       /* without brackets */
  uint16_t port;
  char *authority;  /* host:port as sent in :authority */
  int tls;
} etcdreg_endpoint_t;

typedef struct etcdreg_conn etcdreg_conn_t; /* one channel and its bookkeeping */

typedef enum {
  REQ_RANGE,
  REQ_PUT,
  REQ_DELETE,
  REQ_TXN,
  REQ_COMPACT
} etcdreg_req_kind_t;

/* How a request's decoded response becomes the user's callback. */
typedef void (*etcdreg_req_dispatch_fn)(etcdreg_request_t *req, int status,
                                        const ProtobufCMessage *resp);

struct etcdreg_request {
  etcdreg_client_t *client;
  etcdreg_grpc_call_t *call;       /* the attempt in flight, or NULL between attempts */
  const char *path;                /* static method path */
  uint8_t *payload;                /* the packed request, kept for retries */
  size_t payload_len;
  uint64_t deadline_ms;            /* absolute loop time for the whole request */
  int attempts;
  etcdreg_timer_entry_t retry_timer;
  int waiting;                     /* between attempts (retry_timer armed) */
  int pending_status;              /* completion decided while waiting (cancel/close) */
  etcdreg_req_kind_t kind;
  int is_write;                    /* not to be replayed once sent */
  const ProtobufCMessageDescriptor *resp_desc;
  ProtobufCMessage *resp;
  etcdreg_req_dispatch_fn dispatch;
  void (*user_cb)(void);           /* cast back by dispatch */
  void *data;
  int grpc_status;
  const char *message;             /* borrowed from the gRPC status during the callback */
  int completing;
  etcdreg_request_t *prev, *next;
};

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
  char *user_agent;
  etcdreg_conn_t *current;   /* the connection new calls go to */
  etcdreg_conn_t *conns;     /* every live connection (current and draining) */
  etcdreg_request_t *requests;
  size_t request_count;
  etcdreg_timerq_t timers;         /* retries and backoff: one uv timer for all */
  size_t waiting_count;            /* requests between attempts */
  uint32_t rng;                    /* jitter */
  int max_retries;
  int closing;
  int timers_closing, timers_closed;
  etcdreg_close_cb close_cb;
  void *close_data;
};

/* Starts a unary call: packs `msg`, sends it on the current connection. On success the
 * request is linked into the client and owned by it until its callback has run. */
int etcdreg__request_start(etcdreg_client_t *c, etcdreg_request_t *req, const char *path,
                           const ProtobufCMessage *msg, uint64_t timeout_ms);
etcdreg_request_t *etcdreg__request_new(etcdreg_client_t *c, etcdreg_req_kind_t kind,
                                        int is_write, const ProtobufCMessageDescriptor *resp,
                                        etcdreg_req_dispatch_fn dispatch, void (*cb)(void),
                                        void *data);

void etcdreg__request_free(etcdreg_request_t *req);

/* Maps a gRPC status code and etcd's message to an ETCDREG_E... code. */
int etcdreg__map_grpc_status(int code, const char *message);

/* Endpoint parsing: 0 or ETCDREG_EINVAL with `why` filled. */
int etcdreg__endpoint_parse(const char *s, etcdreg_endpoint_t *ep, char *why, size_t why_len);
void etcdreg__endpoint_free(etcdreg_endpoint_t *ep);

void etcdreg__header_from_pb(etcdreg_header_t *out, const Etcdserverpb__ResponseHeader *h);

#endif
