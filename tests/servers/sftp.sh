#!/usr/bin/env bash
# A second OpenSSH sshd on 127.0.0.1:PORT with key-only login for a test user, without systemd: the SFTP
# server of the remote-replica tests. Everything it makes lives under DIR (keys, config, log, pid, the
# user's home DIR/home). `start` on a running server restarts it; `stop` waits until it has exited.
# Usage: sftp.sh start|stop DIR [PORT] [USER]   (PORT 2222, USER fstest)
# Needs: openssh-server openssh-client; root (re-runs itself with sudo otherwise).
set -euo pipefail
cmd=${1:?usage: sftp.sh start|stop DIR [PORT] [USER]}
D=${2:?usage: sftp.sh start|stop DIR [PORT] [USER]}
PORT=${3:-2222}
U=${4:-fstest}
if [ "$(id -u)" != 0 ]; then exec sudo bash "$0" "$@"; fi
if [ "$cmd" = stop ] && [ ! -d "$D" ]; then exit 0; fi
mkdir -p "$D"
D=$(cd "$D" && pwd)

# A process that has exited but is not yet reaped (a zombie: some inits reap late) counts as gone.
alive() {
  [ -e "/proc/$1" ] && ! grep -qs '^[0-9]* (.*) Z' "/proc/$1/stat"
}

stop() {
  local pid
  pid=$(cat "$D/sshd.pid" 2>/dev/null) || return 0
  # Only a pid that is still this folder's sshd: after a reboot the number may belong to anything.
  if grep -qs -- "$D/sshd_config" "/proc/$pid/cmdline"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
      echo "sftp.sh: sshd (pid $pid) did not exit; log: $D/sshd.log" >&2
      exit 1
    fi
  fi
  rm -f "$D/sshd.pid"
}

case "$cmd" in
  stop) stop; exit 0 ;;
  start) stop ;;
  *) echo "sftp.sh: unknown command '$cmd': use start or stop" >&2; exit 2 ;;
esac

# The listener and every session chroot into /run/sshd (privilege separation); Debian only makes it at boot.
mkdir -p /run/sshd
chmod 755 "$D"
if id "$U" >/dev/null 2>&1; then
  home=$(getent passwd "$U" | cut -d: -f6)
  if [ "$home" != "$D/home" ]; then
    echo "sftp.sh: user '$U' exists with home '$home', not '$D/home': choose another user or state folder" >&2
    exit 1
  fi
else
  useradd -d "$D/home" -s /bin/bash "$U"
fi
# '*': no password yet not locked; with UsePAM no, sshd refuses every login of a locked ('!') account.
usermod -p '*' "$U"
[ -f "$D/hostkey" ] || ssh-keygen -q -t ed25519 -N '' -C foldersync-test-host -f "$D/hostkey"
[ -f "$D/clientkey" ] || ssh-keygen -q -t ed25519 -N '' -C foldersync-test-client -f "$D/clientkey"
mkdir -p "$D/home/.ssh"
cp "$D/clientkey.pub" "$D/home/.ssh/authorized_keys"
chown -R "$U": "$D/home"
cat > "$D/sshd_config" <<CONF
ListenAddress 127.0.0.1
Port $PORT
HostKey $D/hostkey
PidFile $D/sshd.pid
AuthorizedKeysFile $D/home/.ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin no
AllowUsers $U
UsePAM no
StrictModes no
MaxStartups 100:30:200
MaxSessions 100
Subsystem sftp internal-sftp
CONF
: > "$D/sshd.log"
if (: <"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  echo "sftp.sh: port $PORT on 127.0.0.1 is already in use: choose another port" >&2
  exit 1
fi
if ! /usr/sbin/sshd -t -f "$D/sshd_config" 2>>"$D/sshd.log"; then
  echo "sftp.sh: sshd refused its configuration; log: $D/sshd.log" >&2
  exit 1
fi
/usr/sbin/sshd -f "$D/sshd_config" -E "$D/sshd.log" # forks into the background; its pid goes to sshd.pid
up=false
for _ in $(seq 1 100); do
  if [ -f "$D/sshd.pid" ] && (: <"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then up=true; break; fi
  sleep 0.05
done
if ! $up; then
  echo "sftp.sh: sshd did not come up on 127.0.0.1:$PORT; log: $D/sshd.log" >&2
  exit 1
fi
echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$D/hostkey.pub")" > "$D/known_hosts"
echo "sftp://$U@127.0.0.1:$PORT$D/home (key $D/clientkey, known_hosts $D/known_hosts)"
