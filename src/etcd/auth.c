/* Authentication: one token for the whole client, obtained with Authenticate and sent
 * as `token` metadata. Refreshed single-flight when etcd says it is invalid or stale;
 * requests that need it wait (parked) meanwhile. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void on_authenticated(etcdreg_request_t *req, int status, const ProtobufCMessage *resp) {
  etcdreg_client_t *c = req->client;
  c->auth_req = NULL;
  if (status == ETCDREG_EAUTHNOTENABLED) {
    /* Auth is off on the server: proceed without a token. */
    free(c->token);
    c->token = strdup("");
    c->token_gen++;
    etcdreg__log(c, ETCDREG_LOG_INFO, "authentication is not enabled on the server; continuing without a token");
    if (c->token) etcdreg__client_kick(c);
    return;
  }
  if (status != 0) {
    const char *why = etcdreg_request_message(req);
    etcdreg__log(c, ETCDREG_LOG_ERROR, "authentication as \"%s\" failed: %s (%s)", c->username,
                 etcdreg_strerror(status), why);
    etcdreg__fail_parked_auth(c, status, why);
    etcdreg__watch_fail_all(c, status, why);
    etcdreg__keepalive_fail_all(c, status, why);
    return;
  }
  const Etcdserverpb__AuthenticateResponse *r = (const Etcdserverpb__AuthenticateResponse *)resp;
  free(c->token);
  c->token = strdup(r->token ? r->token : "");
  c->token_gen++;
  if (!c->token) {
    etcdreg__fail_parked_auth(c, ETCDREG_ENOMEM, "out of memory storing the token");
    return;
  }
  etcdreg__log(c, ETCDREG_LOG_DEBUG, "authenticated as \"%s\"", c->username);
  etcdreg__client_kick(c);
}

void etcdreg__auth_ensure(etcdreg_client_t *c) {
  if (c->auth_req || c->closing || !c->username) return;
  Etcdserverpb__AuthenticateRequest m;
  etcdserverpb__authenticate_request__init(&m);
  m.name = c->username;
  m.password = c->password;
  etcdreg_request_t *req = etcdreg__request_new(c, REQ_AUTH, 0, &etcdserverpb__authenticate_response__descriptor,
                                                on_authenticated, NULL, NULL);
  if (!req) {
    etcdreg__fail_parked_auth(c, ETCDREG_ENOMEM, "out of memory");
    return;
  }
  req->no_auth = 1;
  c->auth_req = req;
  int rv = etcdreg__request_start(c, req, "/etcdserverpb.Auth/Authenticate", &m.base, 0);
  if (rv) {
    c->auth_req = NULL;
    etcdreg__request_free(req);
    etcdreg__fail_parked_auth(c, rv, "could not start Authenticate");
  }
}

void etcdreg__auth_invalidate(etcdreg_client_t *c, uint64_t gen) {
  if (gen != c->token_gen || !c->token) return; /* already refreshed since */
  free(c->token);
  c->token = NULL;
  etcdreg__log(c, ETCDREG_LOG_INFO, "auth token rejected by the server; authenticating again");
}
