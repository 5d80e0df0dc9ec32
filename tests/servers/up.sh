#!/usr/bin/env bash
# Starts or stops the remote-replica tests' servers, an SFTP sshd (sftp.sh) and a Ceph radosgw S3 (s3.sh),
# both on 127.0.0.1, under one state folder; `start` then describes them in servers.json there, which
# tests/remote_env.ts reads. `stop` removes servers.json, so the remote tests skip rather than fail.
# Usage: up.sh start|stop
# Environment (defaults): FOLDERSYNC_TEST_SERVERS (/tmp/foldersync-servers), FOLDERSYNC_SFTP_PORT (2222),
# FOLDERSYNC_SFTP_USER (fstest), FOLDERSYNC_S3_PORT (7480), FOLDERSYNC_CEPH_MON_PORT (6789).
set -euo pipefail
cmd=${1:?usage: up.sh start|stop}
S=${FOLDERSYNC_TEST_SERVERS:-/tmp/foldersync-servers}
SFTP_PORT=${FOLDERSYNC_SFTP_PORT:-2222}
SFTP_USER=${FOLDERSYNC_SFTP_USER:-fstest}
S3_PORT=${FOLDERSYNC_S3_PORT:-7480}
MON_PORT=${FOLDERSYNC_CEPH_MON_PORT:-6789}
if [ "$(id -u)" != 0 ]; then
  # sudo drops the environment: pass the settings on by name.
  exec sudo FOLDERSYNC_TEST_SERVERS="$S" FOLDERSYNC_SFTP_PORT="$SFTP_PORT" FOLDERSYNC_SFTP_USER="$SFTP_USER" \
    FOLDERSYNC_S3_PORT="$S3_PORT" FOLDERSYNC_CEPH_MON_PORT="$MON_PORT" bash "$0" "$@"
fi
here=$(cd "$(dirname "$0")" && pwd)
if [ "$cmd" = stop ] && [ ! -d "$S" ]; then exit 0; fi
mkdir -p "$S"
S=$(cd "$S" && pwd)

case "$cmd" in
  stop)
    rm -f "$S/servers.json"
    status=0
    bash "$here/s3.sh" stop "$S/s3" || status=1
    bash "$here/sftp.sh" stop "$S/sftp" || status=1
    exit $status
    ;;
  start) ;;
  *) echo "up.sh: unknown command '$cmd': use start or stop" >&2; exit 2 ;;
esac

started=$(date +%s%N)
rm -f "$S/servers.json"
chmod 755 "$S" # the SFTP user's home is below it
bash "$here/sftp.sh" start "$S/sftp" "$SFTP_PORT" "$SFTP_USER"
bash "$here/s3.sh" start "$S/s3" "$S3_PORT" "$MON_PORT"
home=$(getent passwd "$SFTP_USER" | cut -d: -f6)
# Written last, in one rename: its presence means both servers are up.
cat > "$S/servers.json.tmp" <<JSON
{"sftp":{"host":"127.0.0.1","port":$SFTP_PORT,"user":"$SFTP_USER","key":"$S/sftp/clientkey","knownHosts":"$S/sftp/known_hosts","home":"$home"},
 "s3":{"endpoint":"http://127.0.0.1:$S3_PORT","accessKey":"TESTKEY","secretKey":"TESTSECRET","region":"us-east-1"}}
JSON
mv "$S/servers.json.tmp" "$S/servers.json"
ms=$((($(date +%s%N) - started) / 1000000))
echo "test servers up in $((ms / 1000)).$(printf %03d $((ms % 1000))) s: $S/servers.json"
