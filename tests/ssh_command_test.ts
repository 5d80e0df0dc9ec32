/**
 * The pure parts of the SFTP replica's ssh: the command lines, `ssh -G`'s dump, and ssh's stderr
 * (as OpenSSH 9.2 writes it at -v, recorded from the test server) turned into one line.
 */

import assert from "node:assert/strict";
import {
  changedKeyWarning,
  checkSshOption,
  dumpArgs,
  type FailureContext,
  FIXED_OPTIONS,
  isOpenSshServer,
  knownHostsName,
  parseSshDump,
  sessionArgs,
  sshFailure,
  sshOptions,
  type SshResolved,
} from "../lib/backend/sftp/ssh_command.ts";
import { parseTarget } from "../lib/backend/registry.ts";
import { type SftpTarget } from "../lib/backend/target.ts";
import { UsageError } from "../lib/model/errors.ts";

const sftp = (text: string) => parseTarget(text) as SftpTarget;

const RESOLVED: SshResolved = {
  hostName: "127.0.0.1",
  port: 2222,
  user: "fstest",
  connectTimeoutS: undefined,
  serverAliveIntervalS: 0,
  hostKeyAlias: undefined,
  knownHostsFiles: ["/root/.ssh/known_hosts", "/root/.ssh/known_hosts2"],
  proxied: false,
};

function context(extra: Partial<FailureContext> = {}): FailureContext {
  return { host: "127.0.0.1", resolved: RESOLVED, settings: {}, code: 255, ...extra };
}

Deno.test("sshOptions() passes each setting as ssh takes it, the user's options first", () => {
  assert.deepEqual(sshOptions(sftp("sftp://deploy@web1:2200/srv"), { sshPort: 22 }), [
    "-p",
    "2200",
    "-l",
    "deploy",
  ]);
  assert.deepEqual(
    sshOptions(sftp("web1:/srv"), {
      sshPort: 2022,
      sshKey: "/keys/deploy",
      knownHosts: "/etc/fs/known hosts",
      sshConfig: "/etc/fs/ssh_config",
      sshOptions: ["ProxyJump=bastion", "Compression=yes"],
    }),
    [
      "-F",
      "/etc/fs/ssh_config",
      "-o",
      "ProxyJump=bastion",
      "-o",
      "Compression=yes",
      "-p",
      "2022",
      "-i",
      "/keys/deploy",
      "-o",
      "IdentitiesOnly=yes",
      "-o",
      'UserKnownHostsFile="/etc/fs/known hosts"',
    ],
  );
  assert.deepEqual(sshOptions(sftp("web1:/srv"), { knownHosts: '/k/100%"x\\' }), [
    "-o",
    'UserKnownHostsFile="/k/100%%\\"x\\\\"',
  ]);
  assert.deepEqual(sshOptions(sftp("web1:/srv"), {}), [], "nothing given: ssh's config decides");
});

Deno.test("sessionArgs() and dumpArgs() put the fixed options first and the host after --", () => {
  const args = sessionArgs(["-p", "2200"], "-web1", RESOLVED);
  assert.deepEqual(args.slice(0, FIXED_OPTIONS.length * 2), FIXED_OPTIONS.flatMap((o) => ["-o", o]));
  assert.ok(args.includes("BatchMode=yes"));
  assert.deepEqual(args.slice(-4), ["-s", "--", "-web1", "sftp"]);
  assert.ok(args.includes("ConnectTimeout=15") && args.includes("ServerAliveInterval=15"), "defaults where unset");
  const configured = sessionArgs([], "web1", { ...RESOLVED, connectTimeoutS: 5, serverAliveIntervalS: 30 });
  assert.ok(!configured.some((a) => a.startsWith("ConnectTimeout") || a.startsWith("ServerAlive")));
  assert.deepEqual(dumpArgs(["-p", "2200"], "web1"), ["-p", "2200", "-G", "--", "web1"]);
});

Deno.test("checkSshOption() takes Key=Value or Key Value, and refuses the options foldersync fixes", () => {
  assert.equal(checkSshOption("ProxyJump=bastion"), "ProxyJump=bastion");
  assert.equal(checkSshOption("ProxyCommand ssh -W %h:%p gw"), "ProxyCommand=ssh -W %h:%p gw");
  assert.throws(
    () => checkSshOption("ProxyJump"),
    (e: Error) => e instanceof UsageError && /Key=Value/.test(e.message),
  );
  assert.throws(() => checkSshOption("=x"), UsageError);
  assert.throws(
    () => checkSshOption("batchmode=no"),
    (e: Error) => e instanceof UsageError && /BatchMode=yes/.test(e.message) && !e.message.includes("\n"),
  );
});

Deno.test("parseSshDump() reads host, port, user, timeouts, alias and proxies", () => {
  const dump = [
    "host prod",
    "user deploy",
    "hostname 10.0.0.5",
    "port 2200",
    "connecttimeout none",
    "serveraliveinterval 0",
    "userknownhostsfile ~/.ssh/known_hosts /etc/fs/kh",
    "proxyjump bastion",
  ].join("\n");
  const resolved = parseSshDump(dump);
  assert.deepEqual(resolved, {
    hostName: "10.0.0.5",
    port: 2200,
    user: "deploy",
    connectTimeoutS: undefined,
    serverAliveIntervalS: 0,
    hostKeyAlias: undefined,
    knownHostsFiles: ["~/.ssh/known_hosts", "/etc/fs/kh"],
    proxied: true,
  });
  const other = parseSshDump("hostname h\nport 22\nuser u\nconnecttimeout 7\nserveraliveinterval 20\nhostkeyalias k\n");
  assert.equal(other.connectTimeoutS, 7);
  assert.equal(other.serverAliveIntervalS, 20);
  assert.equal(other.hostKeyAlias, "k");
  assert.equal(other.proxied, false);
  assert.throws(() => parseSshDump("nothing useful\n"));
});

Deno.test("changedKeyWarning() speaks up when the config let ssh connect past a changed key", () => {
  assert.match(
    changedKeyWarning(["@@@", "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @"], RESOLVED)!,
    /^ssh: the host key of '\[127\.0\.0\.1\]:2222' HAS CHANGED/,
  );
  assert.equal(changedKeyWarning(["Warning: Permanently added '[127.0.0.1]:2222' (ED25519)"], RESOLVED), undefined);
});

Deno.test("knownHostsName() brackets a port other than 22", () => {
  assert.equal(knownHostsName("127.0.0.1", 2222), "[127.0.0.1]:2222");
  assert.equal(knownHostsName("web1", 22), "web1");
});

Deno.test("isOpenSshServer() reads the server's version, else its extensions", () => {
  assert.equal(
    isOpenSshServer(["debug1: Remote protocol version 2.0, remote software version OpenSSH_9.2p1 Debian"], {}),
    true,
  );
  assert.equal(isOpenSshServer(["debug1: Remote protocol version 2.0, remote software version Bitvise"], {}), false);
  const openssh = { "posix-rename@openssh.com": "1", "hardlink@openssh.com": "1", "fsync@openssh.com": "1" };
  assert.equal(isOpenSshServer([], openssh), true, "a multiplexed session prints no version");
  assert.equal(isOpenSshServer([], { "posix-rename@openssh.com": "1" }), false);
});

// ssh's stderr, as OpenSSH 9.2 writes it at -v (the lines that matter, among its debug output).

const UNKNOWN_KEY = `OpenSSH_9.2p1 Debian-2+deb12u10, OpenSSL 3.0.19 27 Jan 2026
debug1: Connecting to 127.0.0.1 [127.0.0.1] port 2222.
debug1: Remote protocol version 2.0, remote software version OpenSSH_9.2p1 Debian-2+deb12u10
debug1: Server host key: ssh-ed25519 SHA256:Nbgy/Yw4B6RbJKzJtoBlJrrTliU3Pm4NYUXycaaMIcw
debug1: load_hostkeys: fopen /etc/ssh/ssh_known_hosts: No such file or directory
Host key verification failed.
`;

const CHANGED_KEY = `debug1: Server host key: ssh-ed25519 SHA256:Nbgy/Yw4B6RbJKzJtoBlJrrTliU3Pm4NYUXycaaMIcw
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
The fingerprint for the ED25519 key sent by the remote host is
SHA256:Nbgy/Yw4B6RbJKzJtoBlJrrTliU3Pm4NYUXycaaMIcw.
Please contact your system administrator.
Add correct host key in /tmp/kh to get rid of this message.
Offending ED25519 key in /tmp/kh:1
  remove with:
  ssh-keygen -f "/tmp/kh" -R "[127.0.0.1]:2222"
Host key for [127.0.0.1]:2222 has changed and you have requested strict checking.
Host key verification failed.
`;

const REFUSED_KEY =
  `debug1: Will attempt key: /tmp/wrong ED25519 SHA256:s63zX+J8CiVqMz4DFywKyuSAr52NYueodx4s5v3Se/U explicit
debug1: Authentications that can continue: publickey
debug1: Next authentication method: publickey
debug1: Offering public key: /tmp/wrong ED25519 SHA256:s63zX+J8CiVqMz4DFywKyuSAr52NYueodx4s5v3Se/U explicit
debug1: Offering public key: me@laptop ED25519 SHA256:AAAAX+J8CiVqMz4DFywKyuSAr52NYueodx4s5v3Se/U agent
debug1: Authentications that can continue: publickey
debug1: No more authentication methods to try.
fstest@127.0.0.1: Permission denied (publickey).
`;

const PASSPHRASE =
  `debug1: Offering public key: /tmp/enc ED25519 SHA256:Dtut9j2L/IO+P0QdXmh/EqxMvpRy0vWwWDAapq5P134 explicit
debug1: Server accepts key: /tmp/enc ED25519 SHA256:Dtut9j2L/IO+P0QdXmh/EqxMvpRy0vWwWDAapq5P134 explicit
debug1: No more authentication methods to try.
fstest@127.0.0.1: Permission denied (publickey).
`;

Deno.test("sshFailure() says in one line why ssh could not open the session", async (t) => {
  const cases: Array<[string, string, Partial<FailureContext>, string | RegExp]> = [
    [
      "an unknown host name",
      "ssh: Could not resolve hostname no-such-host.invalid: Name or service not known\n",
      {},
      "Unknown host name 'no-such-host.invalid'",
    ],
    [
      "an alias whose HostName is unknown",
      "ssh: Could not resolve hostname typo.example: Name or service not known\n",
      { host: "prod", resolved: { ...RESOLVED, hostName: "typo.example" } },
      "Unknown host name 'typo.example' (HostName of 'prod')",
    ],
    [
      "a resolver failure",
      "ssh: Could not resolve hostname web1: Temporary failure in name resolution\n",
      {},
      "Cannot resolve host name 'web1': Temporary failure in name resolution",
    ],
    [
      "a refused connection",
      "debug1: Connecting to 127.0.0.1 [127.0.0.1] port 1.\nssh: connect to host 127.0.0.1 port 1: Connection refused\n",
      {},
      "Connection refused by '127.0.0.1:1': is sshd running on that port?",
    ],
    [
      "a timed-out connection",
      "ssh: connect to host 10.9.9.9 port 22: Connection timed out\n",
      {},
      "Timed out connecting to '10.9.9.9:22'",
    ],
    [
      "no route",
      "ssh: connect to host 10.9.9.9 port 22: No route to host\n",
      {},
      "Cannot connect to '10.9.9.9:22': No route to host",
    ],
    [
      "a server that never sends its banner",
      "Connection timed out during banner exchange\nConnection to 127.0.0.1 port 47071 timed out\n",
      {},
      "Timed out waiting for the SSH handshake with '127.0.0.1:2222'",
    ],
    [
      "an unknown host key",
      UNKNOWN_KEY,
      { settings: { knownHosts: "/etc/fs/kh" } },
      "Unknown host key for '[127.0.0.1]:2222': ssh-ed25519 SHA256:Nbgy/Yw4B6RbJKzJtoBlJrrTliU3Pm4NYUXycaaMIcw; " +
      "check the fingerprint, then add it with 'ssh-keyscan -p 2222 127.0.0.1 >> /etc/fs/kh' or by connecting once with ssh",
    ],
    [
      "an unknown host key of an alias, behind a proxy",
      UNKNOWN_KEY,
      { resolved: { ...RESOLVED, hostKeyAlias: "box", proxied: true } },
      /^Unknown host key for 'box': .* >> \/root\/\.ssh\/known_hosts' \(through the same ProxyCommand or ProxyJump\)/,
    ],
    [
      "a changed host key",
      CHANGED_KEY,
      {},
      "HOST KEY OF '[127.0.0.1]:2222' HAS CHANGED: the server shows ED25519 key " +
      "SHA256:Nbgy/Yw4B6RbJKzJtoBlJrrTliU3Pm4NYUXycaaMIcw, not the key in '/tmp/kh' line 1; someone may be " +
      "intercepting the connection. If the host was reinstalled, check the new key and replace the old one " +
      "(ssh-keygen -f '/tmp/kh' -R '[127.0.0.1]:2222')",
    ],
    [
      "a revoked host key",
      "debug1: Server host key: ssh-ed25519 SHA256:abc\n@@@ WARNING: REVOKED HOST KEY DETECTED! @@@\n" +
      "The ED25519 host key for [127.0.0.1]:2222 is marked as revoked.\nHost key verification failed.\n",
      {},
      "Host key of '[127.0.0.1]:2222' is REVOKED (ssh-ed25519 SHA256:abc, marked @revoked in known_hosts): " +
      "refusing to connect",
    ],
    [
      "a key the server refuses, and the agent's",
      REFUSED_KEY,
      { settings: { sshKey: "/tmp/wrong" } },
      "Authentication failed for 'fstest@127.0.0.1:2222': the server refused '/tmp/wrong', ssh-agent's 'me@laptop' " +
      "(it accepts: publickey)",
    ],
    [
      "no key at all",
      "debug1: No more authentication methods to try.\nfstest@127.0.0.1: Permission denied (publickey).\n",
      {},
      "Authentication failed for 'fstest@127.0.0.1:2222': ssh had no key the server accepts " +
      "(it accepts: publickey); name the key with --ssh-key",
    ],
    [
      "a server that asks for a password",
      "debug1: No more authentication methods to try.\nfstest@127.0.0.1: Permission denied (publickey,password).\n",
      {},
      /^Authentication failed for .*\(it accepts: publickey,password\); a password is never typed .*ssh-copy-id/,
    ],
    [
      "a key that needs a passphrase",
      PASSPHRASE,
      { settings: { sshKey: "/tmp/enc" } },
      /^Key '\/tmp\/enc' needs a passphrase, and foldersync never prompts .*ssh-add/,
    ],
    [
      "too many keys from the agent",
      "Received disconnect from 127.0.0.1 port 2222:2: Too many authentication failures\n",
      {},
      /^Authentication failed for 'fstest@127\.0\.0\.1:2222': too many keys .*--ssh-key/,
    ],
    [
      "a missing key",
      "Warning: Identity file /tmp/nokey not accessible: No such file or directory.\n" +
      "fstest@127.0.0.1: Permission denied (publickey).\n",
      { settings: { sshKey: "/tmp/nokey" } },
      "Cannot read the SSH key '/tmp/nokey': No such file or directory",
    ],
    [
      "no sftp subsystem",
      "debug1: Sending subsystem: sftp\nsubsystem request failed on channel 0\n",
      {},
      /^The server '127\.0\.0\.1:2222' has no SFTP subsystem: .*Subsystem sftp/,
    ],
    [
      "a bad option in the config",
      "/tmp/cfg: line 2: Bad configuration option: frobnicate\n/tmp/cfg: terminating, 1 bad configuration options\n",
      {},
      "ssh refused its configuration: /tmp/cfg: line 2: Bad configuration option: frobnicate",
    ],
    [
      "a proxy that closes",
      "kex_exchange_identification: Connection closed by remote host\nConnection closed by UNKNOWN port 65535\n",
      { host: "behind", resolved: { ...RESOLVED, proxied: true } },
      "SSH connection to '127.0.0.1:2222' (HostName of 'behind') failed: Connection closed by UNKNOWN port 65535",
    ],
    ["nothing said", "debug1: Exit status 255\n", { code: 255 }, /failed: ssh exited with status 255 before/],
  ];
  for (const [what, stderr, extra, expected] of cases) {
    await t.step(what, () => {
      const line = sshFailure(stderr, context(extra));
      assert.ok(!line.includes("\n"), line);
      if (typeof expected === "string") assert.equal(line, expected);
      else assert.match(line, expected);
    });
  }
});
