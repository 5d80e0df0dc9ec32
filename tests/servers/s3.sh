#!/usr/bin/env bash
# A one-node Ceph cluster on 127.0.0.1 without systemd: one monitor, one bluestore OSD on a sparse file,
# radosgw (beast) serving S3 on 127.0.0.1:PORT with the user TESTKEY/TESTSECRET. The S3 server of the
# remote-replica tests. Everything lives under DIR. `start` reuses a healthy cluster started with the same
# ports, else wipes DIR and makes a new one (20 to 30 s); `stop` waits until every daemon has exited.
# Usage: s3.sh start|stop DIR [PORT] [MON_PORT]   (PORT 7480, MON_PORT 6789)
# Needs: radosgw ceph-mon ceph-osd uuid-runtime curl; root (re-runs itself with sudo otherwise).
set -euo pipefail
cmd=${1:?usage: s3.sh start|stop DIR [PORT] [MON_PORT]}
D=${2:?usage: s3.sh start|stop DIR [PORT] [MON_PORT]}
PORT=${3:-7480}
MON_PORT=${4:-6789}
if [ "$(id -u)" != 0 ]; then exec sudo bash "$0" "$@"; fi
if [ "$cmd" = stop ] && [ ! -d "$D" ]; then exit 0; fi
mkdir -p "$D"
D=$(cd "$D" && pwd)
DAEMONS="client.rgw.a osd.0 mon.a"

# A process that has exited but is not yet reaped (a zombie: some inits reap late) counts as gone.
alive() {
  [ -e "/proc/$1" ] && ! grep -qs '^[0-9]* (.*) Z' "/proc/$1/stat"
}

# The pid of daemon $1 if it is running from this folder's ceph.conf, named with -c or with CEPH_CONF
# in its environment (after a reboot a stale pid file may name anything).
pid_of() {
  local pid
  pid=$(cat "$D/run/$1.pid" 2>/dev/null) || return 1
  alive "$pid" || return 1
  grep -qs -- "$D/ceph.conf" "/proc/$pid/cmdline" || grep -qsa -- "CEPH_CONF=$D/ceph.conf" "/proc/$pid/environ" ||
    return 1
  echo "$pid"
}

stop() {
  local n pid
  for n in $DAEMONS; do pid=$(pid_of "$n") && kill "$pid" 2>/dev/null || true; done
  for n in $DAEMONS; do
    pid=$(pid_of "$n") || continue
    for _ in $(seq 1 150); do alive "$pid" || break; sleep 0.2; done
    if alive "$pid"; then
      echo "s3.sh: $n (pid $pid) did not stop within 30 s, killing it; log: $D/log/$n.log" >&2
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
}

# An S3 request without a body, signed with the test user's keys: proves radosgw, the pools and the user all
# work. radosgw rejects a V4 signature without x-amz-content-sha256, which curl only signs when given.
s3() {
  curl -sf -o /dev/null --max-time 20 --aws-sigv4 aws:amz:us-east-1:s3 --user TESTKEY:TESTSECRET \
    -H "x-amz-content-sha256: $(printf '' | sha256sum | cut -d' ' -f1)" "$@"
}

healthy() {
  local n
  [ "$(cat "$D/ports" 2>/dev/null)" = "$PORT $MON_PORT" ] || return 1
  for n in $DAEMONS; do pid_of "$n" >/dev/null || return 1; done
  s3 "http://127.0.0.1:$PORT/"
}

case "$cmd" in
  stop) stop; exit 0 ;;
  start) ;;
  *) echo "s3.sh: unknown command '$cmd': use start or stop" >&2; exit 2 ;;
esac
if healthy; then
  echo "S3 endpoint http://127.0.0.1:$PORT (TESTKEY/TESTSECRET), already running"
  exit 0
fi
stop
# A monitor already on MON_PORT would answer our ceph commands and take our OSD into its own cluster.
for p in "$MON_PORT" "$PORT"; do
  if (: <"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "s3.sh: port $p on 127.0.0.1 is already in use: choose other ports" >&2
    exit 1
  fi
done
# Wiped before each new cluster: refuse to wipe a folder that is not one of ours.
if [ -n "$(ls -A "$D")" ] && [ ! -f "$D/ceph.conf" ]; then
  echo "s3.sh: '$D' is not empty and holds no ceph.conf: not wiping it" >&2
  exit 1
fi
rm -rf "$D"
mkdir -p "$D"/{run,log,mon.a,osd.0}
FSID=$(uuidgen)
cat > "$D/ceph.conf" <<CONF
[global]
fsid = $FSID
mon_host = v1:127.0.0.1:$MON_PORT
public_addr = 127.0.0.1
# without cluster_addr the OSD listens on every interface
cluster_addr = 127.0.0.1
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
run_dir = $D/run
admin_socket = $D/run/\$name.asok
log_file = $D/log/\$name.log
pid_file = $D/run/\$name.pid
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_crush_chooseleaf_type = 0
mon_warn_on_pool_no_redundancy = false
[mon]
mon_data = $D/mon.\$id
[osd]
osd_data = $D/osd.\$id
osd_objectstore = bluestore
bluestore_block_create = true
# a sparse file: it takes only what the tests write
bluestore_block_size = 10737418240
osd_memory_target = 939524096
bluestore_cache_autotune = false
bluestore_cache_size = 134217728
# with auth none the OSD's own registration fails ('wrong fsid'): it is added to the CRUSH map by hand below
osd_crush_update_on_start = false
osd_class_update_on_start = false
[client.rgw.a]
rgw_frontends = beast endpoint=127.0.0.1:$PORT
rgw_data = $D/rgw
CONF
echo "$PORT $MON_PORT" > "$D/ports"
# -c on every command line, so that each daemon names its own cluster (and pid_of can tell them apart).
C=(-c "$D/ceph.conf")

# wait_for SECONDS WHAT LOG COMMAND...: poll until COMMAND succeeds, or fail naming WHAT and its log.
wait_for() {
  local n=$(($1 * 4)) what=$2 log=$3
  shift 3
  for _ in $(seq 1 "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
  echo "s3.sh: $what did not come up; log: $log" >&2
  exit 1
}
# fail WHAT LOG: a set-up step failed.
fail() {
  echo "s3.sh: $1 failed; log: $2" >&2
  exit 1
}

monmaptool --create --clobber --fsid "$FSID" --addv a "[v1:127.0.0.1:$MON_PORT]" "$D/monmap" >/dev/null
ceph-mon "${C[@]}" -i a --mkfs --monmap "$D/monmap" 2>>"$D/log/mkfs.log" || fail "ceph-mon --mkfs" "$D/log/mkfs.log"
ceph-mon "${C[@]}" -i a 2>>"$D/log/mon.a.log" || fail "ceph-mon" "$D/log/mon.a.log"
wait_for 60 "the monitor" "$D/log/mon.a.log" ceph "${C[@]}" --connect-timeout 5 mon stat
OSD_UUID=$(uuidgen)
ceph "${C[@]}" osd new "$OSD_UUID" >/dev/null
ceph-osd "${C[@]}" -i 0 --mkfs --osd-uuid "$OSD_UUID" 2>>"$D/log/mkfs.log" || fail "ceph-osd --mkfs" "$D/log/mkfs.log"
ceph "${C[@]}" osd crush add osd.0 1 root=default >/dev/null 2>&1 || fail "ceph osd crush add" "$D/log/mon.a.log"
ceph-osd "${C[@]}" -i 0 2>>"$D/log/osd.0.log" || fail "ceph-osd" "$D/log/osd.0.log"
wait_for 60 "the OSD" "$D/log/osd.0.log" bash -c "ceph -c '$D/ceph.conf' osd stat | grep -q '1 up'"
radosgw "${C[@]}" -n client.rgw.a 2>>"$D/log/client.rgw.a.log" || fail "radosgw" "$D/log/client.rgw.a.log"
wait_for 60 "radosgw" "$D/log/client.rgw.a.log" curl -s -o /dev/null "http://127.0.0.1:$PORT/"
radosgw-admin "${C[@]}" user create --uid=test --display-name=test --access-key=TESTKEY --secret-key=TESTSECRET \
  >/dev/null 2>>"$D/log/radosgw-admin.log" || fail "radosgw-admin user create" "$D/log/radosgw-admin.log"
# The first bucket creates radosgw's data pools (about 2 s): pay that here, not in the first test.
wait_for 60 "an S3 bucket" "$D/log/client.rgw.a.log" s3 -X PUT "http://127.0.0.1:$PORT/foldersync-warmup"
s3 -X DELETE "http://127.0.0.1:$PORT/foldersync-warmup" || fail "deleting the warm-up bucket" "$D/log/client.rgw.a.log"
echo "S3 endpoint http://127.0.0.1:$PORT (TESTKEY/TESTSECRET)"
