/* etcdreg.h - umbrella header of etcd-registry for C.
 * An asynchronous etcd v3 client and service registry on the application's libuv loop. */
#ifndef ETCDREG_H
#define ETCDREG_H

#include "etcdreg/error.h"
#include "etcdreg/client.h"
#include "etcdreg/lease.h"
#include "etcdreg/watch.h"
#include "etcdreg/registry.h"

#endif
