#!/usr/bin/env bash
# check-protos.sh - verify the vendored, trimmed etcd protos (proto/etcd/api/...) against
# the expected etcd v3.5 field set embedded below.
#
# It compiles the protos with protoc into a FileDescriptorSet, decodes it to text format
# with `protoc --decode`, flattens it with awk and diffs the result against EXPECTED.
# Exit status: 0 = identical, 1 = difference (diff printed), 2 = tool/compile error.
#
# Line formats (sorted with LC_ALL=C):
#   message <pkg.Message>
#   field   <pkg.Message> <number> <name> <type> <label> <oneof or ->
#             type = scalar name (int64, bytes, ...) or fully qualified message/enum name
#             label = optional (proto3 singular) | repeated
#   enum    <pkg.Enum> <VALUE_NAME> <number>
#   rpc     <pkg.Service> <Method> <input> <output> <unary|client_stream|server_stream|bidi_stream>
#
# Usage: scripts/check-protos.sh           check
#        scripts/check-protos.sh --print   print the actual flattened dump (to regenerate EXPECTED)
# Env:   PROTOC (default: protoc)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROTOC="${PROTOC:-protoc}"
PROTO_FILES=(
  etcd/api/mvccpb/kv.proto
  etcd/api/authpb/auth.proto
  etcd/api/etcdserverpb/rpc.proto
)

command -v "$PROTOC" >/dev/null 2>&1 || { echo "check-protos: '$PROTOC' not found" >&2; exit 2; }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

(cd "$ROOT/proto" && "$PROTOC" -I . --include_imports \
    --descriptor_set_out="$TMP/desc.pb" "${PROTO_FILES[@]}") \
  || { echo "check-protos: protoc failed to compile the protos" >&2; exit 2; }

# Decode the descriptor set to text format. protoc normally finds descriptor.proto on its
# built-in include path; fall back to the usual install locations.
decoded=0
for inc in "" /usr/include /usr/local/include; do
  if [ -z "$inc" ]; then
    args=()
  elif [ -f "$inc/google/protobuf/descriptor.proto" ]; then
    args=(-I "$inc")
  else
    continue
  fi
  if (cd "$TMP" && "$PROTOC" "${args[@]}" --decode=google.protobuf.FileDescriptorSet \
        google/protobuf/descriptor.proto < desc.pb > desc.txt 2> decode.err); then
    decoded=1
    break
  fi
done
if [ "$decoded" != 1 ]; then
  echo "check-protos: cannot decode descriptor set (google/protobuf/descriptor.proto not found?)" >&2
  cat "$TMP/decode.err" >&2 || true
  exit 2
fi

awk '
function unq(s) { sub(/^[^:]*:[ \t]*/, "", s); gsub(/"/, "", s); sub(/^\./, "", s); return s }
BEGIN { d = 0 }
/\{[ \t]*$/ {
  blk = $1; d++; st[d] = blk; nm[d] = ""
  if (blk == "field") { fname = fnum = flabel = ftype = ftname = ""; foneof = -1 }
  if (blk == "method") { mname = min = mout = ""; cs = ss = 0 }
  next
}
/^[ \t]*\}[ \t]*$/ {
  blk = st[d]
  if (blk == "field" && (st[d-1] == "message_type" || st[d-1] == "nested_type")) {
    lab = flabel; sub(/^LABEL_/, "", lab); lab = tolower(lab)
    t = ftype; sub(/^TYPE_/, "", t); t = tolower(t)
    if (t == "message" || t == "enum") t = ftname
    nf++; fmsg[nf] = nm[d-1]; fline[nf] = fnum " " fname " " t " " lab; foi[nf] = foneof
  }
  if (blk == "method") {
    k = (cs && ss) ? "bidi_stream" : cs ? "client_stream" : ss ? "server_stream" : "unary"
    print "rpc " nm[d-1] " " mname " " min " " mout " " k
  }
  d--; next
}
{
  key = $1; sub(/:$/, "", key); blk = st[d]
  if (key == "package" && blk == "file") { pkg = unq($0); next }
  if (key == "name") {
    v = unq($0)
    if (blk == "message_type" || blk == "nested_type" || blk == "enum_type" || blk == "service") {
      nm[d] = ((st[d-1] == "file") ? pkg : nm[d-1]) "." v
      if (blk == "message_type" || blk == "nested_type") print "message " nm[d]
    } else if (blk == "oneof_decl") {
      oname[nm[d-1], oc[nm[d-1]]++] = v
    } else if (blk == "field") fname = v
    else if (blk == "value") ename = v
    else if (blk == "method") mname = v
    next
  }
  if (blk == "field") {
    if (key == "number") fnum = $2
    else if (key == "label") flabel = $2
    else if (key == "type") ftype = $2
    else if (key == "type_name") ftname = unq($0)
    else if (key == "oneof_index") foneof = $2
  } else if (blk == "value" && key == "number") {
    print "enum " nm[d-1] " " ename " " $2
  } else if (blk == "method") {
    if (key == "input_type") min = unq($0)
    else if (key == "output_type") mout = unq($0)
    else if (key == "client_streaming" && $2 == "true") cs = 1
    else if (key == "server_streaming" && $2 == "true") ss = 1
  }
}
END {
  for (i = 1; i <= nf; i++)
    print "field " fmsg[i] " " fline[i] " " ((foi[i] >= 0) ? oname[fmsg[i], foi[i]] : "-")
}
' "$TMP/desc.txt" | LC_ALL=C sort > "$TMP/actual.txt"

if [ "${1:-}" = "--print" ]; then
  cat "$TMP/actual.txt"
  exit 0
fi

if [ ! -s "$TMP/actual.txt" ]; then
  echo "check-protos: empty descriptor dump (awk parse failure?)" >&2
  exit 2
fi

LC_ALL=C sort > "$TMP/expected.txt" <<'EXPECTED'
enum authpb.Permission.Type READ 0
enum authpb.Permission.Type READWRITE 2
enum authpb.Permission.Type WRITE 1
enum etcdserverpb.Compare.CompareResult EQUAL 0
enum etcdserverpb.Compare.CompareResult GREATER 1
enum etcdserverpb.Compare.CompareResult LESS 2
enum etcdserverpb.Compare.CompareResult NOT_EQUAL 3
enum etcdserverpb.Compare.CompareTarget CREATE 1
enum etcdserverpb.Compare.CompareTarget LEASE 4
enum etcdserverpb.Compare.CompareTarget MOD 2
enum etcdserverpb.Compare.CompareTarget VALUE 3
enum etcdserverpb.Compare.CompareTarget VERSION 0
enum etcdserverpb.RangeRequest.SortOrder ASCEND 1
enum etcdserverpb.RangeRequest.SortOrder DESCEND 2
enum etcdserverpb.RangeRequest.SortOrder NONE 0
enum etcdserverpb.RangeRequest.SortTarget CREATE 2
enum etcdserverpb.RangeRequest.SortTarget KEY 0
enum etcdserverpb.RangeRequest.SortTarget MOD 3
enum etcdserverpb.RangeRequest.SortTarget VALUE 4
enum etcdserverpb.RangeRequest.SortTarget VERSION 1
enum etcdserverpb.WatchCreateRequest.FilterType NODELETE 1
enum etcdserverpb.WatchCreateRequest.FilterType NOPUT 0
enum mvccpb.Event.EventType DELETE 1
enum mvccpb.Event.EventType PUT 0
field authpb.Permission 1 permType authpb.Permission.Type optional -
field authpb.Permission 2 key bytes optional -
field authpb.Permission 3 range_end bytes optional -
field authpb.Role 1 name bytes optional -
field authpb.Role 2 keyPermission authpb.Permission repeated -
field authpb.User 1 name bytes optional -
field authpb.User 2 password bytes optional -
field authpb.User 3 roles string repeated -
field authpb.User 4 options authpb.UserAddOptions optional -
field authpb.UserAddOptions 1 no_password bool optional -
field etcdserverpb.AuthStatusResponse 1 header etcdserverpb.ResponseHeader optional -
field etcdserverpb.AuthStatusResponse 2 enabled bool optional -
field etcdserverpb.AuthStatusResponse 3 authRevision uint64 optional -
field etcdserverpb.AuthenticateRequest 1 name string optional -
field etcdserverpb.AuthenticateRequest 2 password string optional -
field etcdserverpb.AuthenticateResponse 1 header etcdserverpb.ResponseHeader optional -
field etcdserverpb.AuthenticateResponse 2 token string optional -
field etcdserverpb.CompactionRequest 1 revision int64 optional -
field etcdserverpb.CompactionRequest 2 physical bool optional -
field etcdserverpb.CompactionResponse 1 header etcdserverpb.ResponseHeader optional -
field etcdserverpb.Compare 1 result etcdserverpb.Compare.CompareResult optional -
field etcdserverpb.Compare 2 target etcdserverpb.Compare.CompareTarget optional -
field etcdserverpb.Compare 3 key bytes optional -
field etcdserverpb.Compare 4 version int64 optional target_union
field etcdserverpb.Compare 5 create_revision int64 optional target_union
field etcdserverpb.Compare 6 mod_revision int64 optional target_union
field etcdserverpb.Compare 64 range_end bytes optional -
field etcdserverpb.Compare 7 value bytes optional target_union
field etcdserverpb.Compare 8 lease int64 optional target_union
field etcdserverpb.DeleteRangeRequest 1 key bytes optional -
field etcdserverpb.DeleteRangeRequest 2 range_end bytes optional -
field etcdserverpb.DeleteRangeRequest 3 prev_kv bool optional -
field etcdserverpb.DeleteRangeResponse 1 header etcdserverpb.ResponseHeader optional -
field etcdserverpb.DeleteRangeResponse 2 deleted int64 optional -
field etcdserverpb.DeleteRangeResponse 3 prev_kvs mvccpb.KeyValue repeated -
field etcdserverpb.LeaseGrantRequest 1 TTL int64 optional -
field etcdserverpb.LeaseGrantRequest 2 ID int64 optional -
field etcdserverpb.LeaseGrantResponse 1 header etcdserverpb.ResponseHeader optional -
field etcdserverpb.LeaseGrantResponse 2 ID int64 optional -
field etcdserverpb.LeaseGrantResponse 3 TTL int64 optional -
field etcdserverpb.LeaseGrantResponse 4 error string optional -
field etcdserverpb.LeaseKeepAliveRequest 1 ID int64 optional -
field etcdserverpb.LeaseKeepAliveResponse 1 header etcdserverpb.ResponseHeader optional -
field etcdserverpb.LeaseKeepAliveResponse 2 ID int64 optional -
field etcdserverpb.LeaseKeepAliveResponse 3 TTL int64 optional -
field etcdserverpb.LeaseLeasesResponse 1 header etcdserverpb.ResponseHeader optional -
field etcdserverpb.LeaseLeasesResponse 2 leases etcdserverpb.LeaseStatus repeated -
field etcdserverpb.LeaseRevokeRequest 1 ID int64 optional -
field etcdserverpb.LeaseRevokeResponse 1 header etcdserverpb.ResponseHeader optional -
field etcdserverpb.LeaseStatus 1 ID int64 optional -
field etcdserverpb.LeaseTimeToLiveRequest 1 ID int64 optional -
field etcdserverpb.LeaseTimeToLiveRequest 2 keys bool optional -
field etcdserverpb.LeaseTimeToLiveResponse 1 header etcdserverpb.ResponseHeader optional -
field etcdserverpb.LeaseTimeToLiveResponse 2 ID int64 optional -
field etcdserverpb.LeaseTimeToLiveResponse 3 TTL int64 optional -
field etcdserverpb.LeaseTimeToLiveResponse 4 grantedTTL int64 optional -
field etcdserverpb.LeaseTimeToLiveResponse 5 keys bytes repeated -
field etcdserverpb.Member 1 ID uint64 optional -
field etcdserverpb.Member 2 name string optional -
field etcdserverpb.Member 3 peerURLs string repeated -
field etcdserverpb.Member 4 clientURLs string repeated -
field etcdserverpb.Member 5 isLearner bool optional -
field etcdserverpb.MemberListRequest 1 linearizable bool optional -
field etcdserverpb.MemberListResponse 1 header etcdserverpb.ResponseHeader optional -
field etcdserverpb.MemberListResponse 2 members etcdserverpb.Member repeated -
field etcdserverpb.PutRequest 1 key bytes optional -
field etcdserverpb.PutRequest 2 value bytes optional -
field etcdserverpb.PutRequest 3 lease int64 optional -
field etcdserverpb.PutRequest 4 prev_kv bool optional -
field etcdserverpb.PutRequest 5 ignore_value bool optional -
field etcdserverpb.PutRequest 6 ignore_lease bool optional -
field etcdserverpb.PutResponse 1 header etcdserverpb.ResponseHeader optional -
field etcdserverpb.PutResponse 2 prev_kv mvccpb.KeyValue optional -
field etcdserverpb.RangeRequest 1 key bytes optional -
field etcdserverpb.RangeRequest 10 min_mod_revision int64 optional -
field etcdserverpb.RangeRequest 11 max_mod_revision int64 optional -
field etcdserverpb.RangeRequest 12 min_create_revision int64 optional -
field etcdserverpb.RangeRequest 13 max_create_revision int64 optional -
field etcdserverpb.RangeRequest 2 range_end bytes optional -
field etcdserverpb.RangeRequest 3 limit int64 optional -
field etcdserverpb.RangeRequest 4 revision int64 optional -
field etcdserverpb.RangeRequest 5 sort_order etcdserverpb.RangeRequest.SortOrder optional -
field etcdserverpb.RangeRequest 6 sort_target etcdserverpb.RangeRequest.SortTarget optional -
field etcdserverpb.RangeRequest 7 serializable bool optional -
field etcdserverpb.RangeRequest 8 keys_only bool optional -
field etcdserverpb.RangeRequest 9 count_only bool optional -
field etcdserverpb.RangeResponse 1 header etcdserverpb.ResponseHeader optional -
field etcdserverpb.RangeResponse 2 kvs mvccpb.KeyValue repeated -
field etcdserverpb.RangeResponse 3 more bool optional -
field etcdserverpb.RangeResponse 4 count int64 optional -
field etcdserverpb.RequestOp 1 request_range etcdserverpb.RangeRequest optional request
field etcdserverpb.RequestOp 2 request_put etcdserverpb.PutRequest optional request
field etcdserverpb.RequestOp 3 request_delete_range etcdserverpb.DeleteRangeRequest optional request
field etcdserverpb.RequestOp 4 request_txn etcdserverpb.TxnRequest optional request
field etcdserverpb.ResponseHeader 1 cluster_id uint64 optional -
field etcdserverpb.ResponseHeader 2 member_id uint64 optional -
field etcdserverpb.ResponseHeader 3 revision int64 optional -
field etcdserverpb.ResponseHeader 4 raft_term uint64 optional -
field etcdserverpb.ResponseOp 1 response_range etcdserverpb.RangeResponse optional response
field etcdserverpb.ResponseOp 2 response_put etcdserverpb.PutResponse optional response
field etcdserverpb.ResponseOp 3 response_delete_range etcdserverpb.DeleteRangeResponse optional response
field etcdserverpb.ResponseOp 4 response_txn etcdserverpb.TxnResponse optional response
field etcdserverpb.StatusResponse 1 header etcdserverpb.ResponseHeader optional -
field etcdserverpb.StatusResponse 10 isLearner bool optional -
field etcdserverpb.StatusResponse 2 version string optional -
field etcdserverpb.StatusResponse 3 dbSize int64 optional -
field etcdserverpb.StatusResponse 4 leader uint64 optional -
field etcdserverpb.StatusResponse 5 raftIndex uint64 optional -
field etcdserverpb.StatusResponse 6 raftTerm uint64 optional -
field etcdserverpb.StatusResponse 7 raftAppliedIndex uint64 optional -
field etcdserverpb.StatusResponse 8 errors string repeated -
field etcdserverpb.StatusResponse 9 dbSizeInUse int64 optional -
field etcdserverpb.TxnRequest 1 compare etcdserverpb.Compare repeated -
field etcdserverpb.TxnRequest 2 success etcdserverpb.RequestOp repeated -
field etcdserverpb.TxnRequest 3 failure etcdserverpb.RequestOp repeated -
field etcdserverpb.TxnResponse 1 header etcdserverpb.ResponseHeader optional -
field etcdserverpb.TxnResponse 2 succeeded bool optional -
field etcdserverpb.TxnResponse 3 responses etcdserverpb.ResponseOp repeated -
field etcdserverpb.WatchCancelRequest 1 watch_id int64 optional -
field etcdserverpb.WatchCreateRequest 1 key bytes optional -
field etcdserverpb.WatchCreateRequest 2 range_end bytes optional -
field etcdserverpb.WatchCreateRequest 3 start_revision int64 optional -
field etcdserverpb.WatchCreateRequest 4 progress_notify bool optional -
field etcdserverpb.WatchCreateRequest 5 filters etcdserverpb.WatchCreateRequest.FilterType repeated -
field etcdserverpb.WatchCreateRequest 6 prev_kv bool optional -
field etcdserverpb.WatchCreateRequest 7 watch_id int64 optional -
field etcdserverpb.WatchCreateRequest 8 fragment bool optional -
field etcdserverpb.WatchRequest 1 create_request etcdserverpb.WatchCreateRequest optional request_union
field etcdserverpb.WatchRequest 2 cancel_request etcdserverpb.WatchCancelRequest optional request_union
field etcdserverpb.WatchRequest 3 progress_request etcdserverpb.WatchProgressRequest optional request_union
field etcdserverpb.WatchResponse 1 header etcdserverpb.ResponseHeader optional -
field etcdserverpb.WatchResponse 11 events mvccpb.Event repeated -
field etcdserverpb.WatchResponse 2 watch_id int64 optional -
field etcdserverpb.WatchResponse 3 created bool optional -
field etcdserverpb.WatchResponse 4 canceled bool optional -
field etcdserverpb.WatchResponse 5 compact_revision int64 optional -
field etcdserverpb.WatchResponse 6 cancel_reason string optional -
field etcdserverpb.WatchResponse 7 fragment bool optional -
field mvccpb.Event 1 type mvccpb.Event.EventType optional -
field mvccpb.Event 2 kv mvccpb.KeyValue optional -
field mvccpb.Event 3 prev_kv mvccpb.KeyValue optional -
field mvccpb.KeyValue 1 key bytes optional -
field mvccpb.KeyValue 2 create_revision int64 optional -
field mvccpb.KeyValue 3 mod_revision int64 optional -
field mvccpb.KeyValue 4 version int64 optional -
field mvccpb.KeyValue 5 value bytes optional -
field mvccpb.KeyValue 6 lease int64 optional -
message authpb.Permission
message authpb.Role
message authpb.User
message authpb.UserAddOptions
message etcdserverpb.AuthStatusRequest
message etcdserverpb.AuthStatusResponse
message etcdserverpb.AuthenticateRequest
message etcdserverpb.AuthenticateResponse
message etcdserverpb.CompactionRequest
message etcdserverpb.CompactionResponse
message etcdserverpb.Compare
message etcdserverpb.DeleteRangeRequest
message etcdserverpb.DeleteRangeResponse
message etcdserverpb.LeaseGrantRequest
message etcdserverpb.LeaseGrantResponse
message etcdserverpb.LeaseKeepAliveRequest
message etcdserverpb.LeaseKeepAliveResponse
message etcdserverpb.LeaseLeasesRequest
message etcdserverpb.LeaseLeasesResponse
message etcdserverpb.LeaseRevokeRequest
message etcdserverpb.LeaseRevokeResponse
message etcdserverpb.LeaseStatus
message etcdserverpb.LeaseTimeToLiveRequest
message etcdserverpb.LeaseTimeToLiveResponse
message etcdserverpb.Member
message etcdserverpb.MemberListRequest
message etcdserverpb.MemberListResponse
message etcdserverpb.PutRequest
message etcdserverpb.PutResponse
message etcdserverpb.RangeRequest
message etcdserverpb.RangeResponse
message etcdserverpb.RequestOp
message etcdserverpb.ResponseHeader
message etcdserverpb.ResponseOp
message etcdserverpb.StatusRequest
message etcdserverpb.StatusResponse
message etcdserverpb.TxnRequest
message etcdserverpb.TxnResponse
message etcdserverpb.WatchCancelRequest
message etcdserverpb.WatchCreateRequest
message etcdserverpb.WatchProgressRequest
message etcdserverpb.WatchRequest
message etcdserverpb.WatchResponse
message mvccpb.Event
message mvccpb.KeyValue
rpc etcdserverpb.Auth AuthStatus etcdserverpb.AuthStatusRequest etcdserverpb.AuthStatusResponse unary
rpc etcdserverpb.Auth Authenticate etcdserverpb.AuthenticateRequest etcdserverpb.AuthenticateResponse unary
rpc etcdserverpb.Cluster MemberList etcdserverpb.MemberListRequest etcdserverpb.MemberListResponse unary
rpc etcdserverpb.KV Compact etcdserverpb.CompactionRequest etcdserverpb.CompactionResponse unary
rpc etcdserverpb.KV DeleteRange etcdserverpb.DeleteRangeRequest etcdserverpb.DeleteRangeResponse unary
rpc etcdserverpb.KV Put etcdserverpb.PutRequest etcdserverpb.PutResponse unary
rpc etcdserverpb.KV Range etcdserverpb.RangeRequest etcdserverpb.RangeResponse unary
rpc etcdserverpb.KV Txn etcdserverpb.TxnRequest etcdserverpb.TxnResponse unary
rpc etcdserverpb.Lease LeaseGrant etcdserverpb.LeaseGrantRequest etcdserverpb.LeaseGrantResponse unary
rpc etcdserverpb.Lease LeaseKeepAlive etcdserverpb.LeaseKeepAliveRequest etcdserverpb.LeaseKeepAliveResponse bidi_stream
rpc etcdserverpb.Lease LeaseLeases etcdserverpb.LeaseLeasesRequest etcdserverpb.LeaseLeasesResponse unary
rpc etcdserverpb.Lease LeaseRevoke etcdserverpb.LeaseRevokeRequest etcdserverpb.LeaseRevokeResponse unary
rpc etcdserverpb.Lease LeaseTimeToLive etcdserverpb.LeaseTimeToLiveRequest etcdserverpb.LeaseTimeToLiveResponse unary
rpc etcdserverpb.Maintenance Status etcdserverpb.StatusRequest etcdserverpb.StatusResponse unary
rpc etcdserverpb.Watch Watch etcdserverpb.WatchRequest etcdserverpb.WatchResponse bidi_stream
EXPECTED

if diff -u "$TMP/expected.txt" "$TMP/actual.txt" > "$TMP/diff.txt"; then
  echo "check-protos: OK ($(grep -c '^message ' "$TMP/actual.txt") messages, $(grep -c '^field ' "$TMP/actual.txt") fields, $(grep -c '^enum ' "$TMP/actual.txt") enum values, $(grep -c '^rpc ' "$TMP/actual.txt") rpcs match the expected etcd v3.5 field set)"
  exit 0
fi
echo "check-protos: MISMATCH between vendored protos and expected etcd v3.5 field set" >&2
echo "  (- expected, + actual)" >&2
cat "$TMP/diff.txt" >&2
exit 1
