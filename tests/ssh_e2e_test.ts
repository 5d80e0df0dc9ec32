/**
 * End to end through main.ts: SFTP replicas reached through the system's OpenSSH client, with
 * what only OpenSSH gives (a ProxyCommand, any `-o` option, a config file), and every way ssh
 * can fail as one line and exit 2. Against the real sshd of tests/servers/, and against sshds
 * started here on other ports for the variants (no sftp subsystem); every sync judged by rsync.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { failsWithOneLine, mirrorDiff, runMain, tempDir, writeTree } from "./helpers.ts";
import { remoteTest, sftpFolder, type SftpServer, sftpServer } from "./remote_env.ts";

/** What an SFTP run needs: ssh (which reads ~/.ssh and reaches the network itself). */
const PERMISSIONS = ["--allow-read", "--allow-write", "--allow-run=ssh", "--allow-env", "--allow-sys"];

const TREE = { "a.txt": "alpha", docs: { "b.md": "bravo" }, "link": { link: "a.txt" } };

/** The server's host key line, as known_hosts holds it, under another name. */
async function hostKeyAs(server: SftpServer, name: string): Promise<string> {
  const [, type, key] = (await Deno.readTextFile(server.knownHosts)).trim().split(/\s+/);
  return `${name} ${type} ${key}\n`;
}

remoteTest(
  "SFTP: a Host alias reachable only through a ProxyCommand relay (--ssh-config)",
  "sftp",
  sftpServer,
  async (server) => {
    await using src = await tempDir();
    await using dir = await tempDir();
    await using dst = await sftpFolder(server);
    await writeTree(src.path, TREE);
    // A relay in bash: the only way to the server, since the HostName does not resolve.
    const relay = join(dir.path, "relay.sh");
    const used = join(dir.path, "relay-used");
    await Deno.writeTextFile(
      relay,
      `#!/usr/bin/env bash\nset -e\necho "$1:$2" >> '${used}'\nexec 3<>"/dev/tcp/${server.host}/${server.port}"\n` +
        `cat <&3 &\ncat >&3\n`,
    );
    await Deno.chmod(relay, 0o755);
    const knownHosts = join(dir.path, "known_hosts");
    await Deno.writeTextFile(knownHosts, await hostKeyAs(server, "[hidden.invalid]:2222"));
    const config = join(dir.path, "config");
    await Deno.writeTextFile(
      config,
      [
        "Host hidden-box",
        "  HostName hidden.invalid",
        "  Port 2222",
        `  User ${server.user}`,
        `  IdentityFile ${server.key}`,
        "  IdentitiesOnly yes",
        "  IdentityAgent none",
        `  UserKnownHostsFile ${knownHosts}`,
        `  ProxyCommand ${relay} %h %p`,
        "",
      ].join("\n"),
    );
    const out = await runMain([src.path, `hidden-box:${dst.path}`, "--ssh-config", config], {
      permissions: PERMISSIONS,
    });
    assert.equal(out.code, 0, out.stderr + out.stdout);
    assert.equal(await mirrorDiff(src.path, dst.path), "");
    assert.match(await Deno.readTextFile(used), /^hidden\.invalid:2222$/m, "the relay carried the session");

    // Without the relay the alias leads nowhere: one line naming the host.
    await Deno.writeTextFile(config, (await Deno.readTextFile(config)).replace(/ {2}ProxyCommand .*\n/, ""));
    const line = await failsWithOneLine([src.path, `hidden-box:${dst.path}`, "--ssh-config", config]);
    assert.equal(line, "Unknown host name 'hidden.invalid' (HostName of 'hidden-box')");
  },
);

remoteTest("SFTP: --ssh-option passes any option to ssh, and bad ones are exit 2", "sftp", sftpServer, async (
  server,
  t,
) => {
  await using src = await tempDir();
  await using dst = await sftpFolder(server);
  await writeTree(src.path, TREE);
  const login = `${server.user}@${server.host}:${dst.path}`;

  await t.step("Port, IdentityFile and UserKnownHostsFile as -o options", async () => {
    const out = await runMain([
      src.path,
      login,
      "--ssh-config",
      "/dev/null",
      "--ssh-option",
      `Port=${server.port}`,
      "--ssh-option",
      `IdentityFile ${server.key}`,
      "--ssh-option",
      `UserKnownHostsFile=${server.knownHosts}`,
      "--ssh-option",
      "IdentityAgent=none",
    ], { permissions: PERMISSIONS });
    assert.equal(out.code, 0, out.stderr + out.stdout);
    assert.equal(await mirrorDiff(src.path, dst.path), "");
  });

  await t.step("an option foldersync fixes, a malformed one, one ssh does not know", async () => {
    const base = [src.path, login, "--ssh-config", "/dev/null"];
    assert.match(
      await failsWithOneLine([...base, "--ssh-option", "BatchMode=no"]),
      /always runs ssh with BatchMode=yes/,
    );
    assert.match(await failsWithOneLine([...base, "--ssh-option", "Port"]), /^SSH option must be written Key=Value/);
    assert.match(
      await failsWithOneLine([...base, "--ssh-option", "Frobnicate=1"]),
      /^ssh refused its configuration: .*Bad configuration option: frobnicate/i,
    );
    assert.match(
      await failsWithOneLine([src.path, "/tmp/x", "--ssh-option", "Port=1"]),
      /^Option needs an SFTP source or replica/,
    );
  });
});

remoteTest("SFTP: ssh's failures are one line and exit 2, and nothing is touched", "sftp", sftpServer, async (
  server,
  t,
) => {
  await using src = await tempDir();
  await using dir = await tempDir();
  await using dst = await sftpFolder(server);
  await writeTree(src.path, TREE);
  const base = [src.path, dst.url, "--ssh-config", "/dev/null", "--ssh-option", "IdentityAgent=none"];
  const known = ["--known-hosts", server.knownHosts];
  const untouched = () => assert.deepEqual([...Deno.readDirSync(dst.path)], [], "the replica was touched");

  await t.step("a key file that does not exist", async () => {
    const missing = join(dir.path, "no-such-key");
    const line = await failsWithOneLine([...base, ...known, "--ssh-key", missing]);
    assert.equal(line, `Cannot read the SSH key '${missing}': No such file or directory`);
    untouched();
  });
  await t.step("the right key, locked by a passphrase, and no agent", async () => {
    const locked = join(dir.path, "locked");
    await Deno.copyFile(server.key, locked);
    await Deno.chmod(locked, 0o600);
    await new Deno.Command("ssh-keygen", { args: ["-q", "-p", "-P", "", "-N", "secret", "-f", locked] }).output();
    const line = await failsWithOneLine([...base, ...known, "--ssh-key", locked]);
    assert.match(line, /needs a passphrase, and foldersync never prompts .* ssh-add/);
    untouched();
  });
  await t.step("an unknown host key: refused, never trusted on first use", async () => {
    const empty = join(dir.path, "empty_known_hosts");
    await Deno.writeTextFile(empty, "");
    const line = await failsWithOneLine([...base, "--ssh-key", server.key, "--known-hosts", empty]);
    assert.match(line, /^Unknown host key for '\[127\.0\.0\.1\]:\d+': ssh-ed25519 SHA256:\S+; check the fingerprint/);
    assert.equal(await Deno.readTextFile(empty), "", "nothing was added to known_hosts");
    untouched();
  });
  await t.step("a changed host key", async () => {
    const changed = join(dir.path, "changed_known_hosts");
    await new Deno.Command("ssh-keygen", { args: ["-q", "-t", "ed25519", "-N", "", "-f", join(dir.path, "other")] })
      .output();
    const other = (await Deno.readTextFile(join(dir.path, "other.pub"))).split(" ").slice(0, 2).join(" ");
    await Deno.writeTextFile(changed, `[${server.host}]:${server.port} ${other}\n`);
    const line = await failsWithOneLine([...base, "--ssh-key", server.key, "--known-hosts", changed]);
    assert.match(
      line,
      new RegExp(`^HOST KEY OF '\\[127\\.0\\.0\\.1\\]:${server.port}' HAS CHANGED: .*'${changed}' line 1`),
    );
    untouched();
  });
  await t.step("ssh not installed: says so and how to install it", async () => {
    const out = await runMain([...base, ...known, "--ssh-key", server.key], {
      permissions: ["--allow-read", "--allow-write", "--allow-run", "--allow-env", "--allow-sys"],
      env: { PATH: dir.path },
    });
    assert.equal(out.code, 2, out.stderr);
    assert.equal(out.stderr.trim().split("\n").length, 1, out.stderr);
    assert.match(
      out.stderr,
      /The OpenSSH client 'ssh' is needed .* install it \(Debian, Ubuntu: apt install openssh-client/,
    );
    untouched();
  });
  await t.step("StrictHostKeyChecking=accept-new as the user configured: the key is added", async () => {
    const fresh = join(dir.path, "fresh_known_hosts");
    const out = await runMain(
      [...base, "--ssh-key", server.key, "--known-hosts", fresh, "--ssh-option", "StrictHostKeyChecking=accept-new"],
      { permissions: PERMISSIONS },
    );
    assert.equal(out.code, 0, out.stderr + out.stdout);
    assert.match(out.stdout + out.stderr, /ssh: Permanently added/, "the log says so");
    assert.match(await Deno.readTextFile(fresh), /ssh-ed25519/);
    assert.equal(await mirrorDiff(src.path, dst.path), "");
  });
  await t.step("a changed host key under StrictHostKeyChecking=no as the user configured: never silent", async () => {
    const changed = join(dir.path, "changed_known_hosts");
    const out = await runMain(
      [...base, "--ssh-key", server.key, "--known-hosts", changed, "--ssh-option", "StrictHostKeyChecking=no"],
      { permissions: PERMISSIONS },
    );
    assert.equal(out.code, 0, out.stderr + out.stdout);
    assert.match(out.stdout + out.stderr, /WARN .*ssh: the host key of '\[127\.0\.0\.1\]:\d+' HAS CHANGED/);
  });
});

remoteTest("SFTP: a server without the sftp subsystem is exit 2 with one line", "sftp", sftpServer, async (server) => {
  await using src = await tempDir();
  await using sshd = await startSshd(server, { subsystem: false });
  await writeTree(src.path, TREE);
  const line = await failsWithOneLine([
    src.path,
    `sftp://${server.user}@127.0.0.1:${sshd.port}/tmp/never-made`,
    "--ssh-key",
    server.key,
    "--known-hosts",
    sshd.knownHosts,
    "--ssh-config",
    "/dev/null",
  ]);
  assert.match(line, new RegExp(`^The server '127\\.0\\.0\\.1:${sshd.port}' has no SFTP subsystem`));
  await assert.rejects(Deno.lstat("/tmp/never-made"));
});

/**
 * An sshd of our own on a free port, for the user of `server` (its authorized keys), with a
 * fresh host key; without the sftp subsystem when asked. Stopped on dispose.
 */
async function startSshd(
  server: SftpServer,
  how: { subsystem: boolean },
): Promise<{ port: number; knownHosts: string } & AsyncDisposable> {
  const dir = await tempDir("foldersync-sshd-");
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const hostKey = join(dir.path, "hostkey");
  await new Deno.Command("ssh-keygen", { args: ["-q", "-t", "ed25519", "-N", "", "-f", hostKey] }).output();
  const config = join(dir.path, "sshd_config");
  await Deno.writeTextFile(
    config,
    [
      "ListenAddress 127.0.0.1",
      `Port ${port}`,
      `HostKey ${hostKey}`,
      `PidFile ${join(dir.path, "sshd.pid")}`,
      `AuthorizedKeysFile ${join(server.home, ".ssh/authorized_keys")}`,
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      `AllowUsers ${server.user}`,
      "UsePAM no",
      "StrictModes no",
      ...(how.subsystem ? ["Subsystem sftp internal-sftp"] : []),
      "",
    ].join("\n"),
  );
  const knownHosts = join(dir.path, "known_hosts");
  const [type, key] = (await Deno.readTextFile(`${hostKey}.pub`)).split(" ");
  await Deno.writeTextFile(knownHosts, `[127.0.0.1]:${port} ${type} ${key}\n`);
  const child = new Deno.Command("/usr/sbin/sshd", {
    args: ["-D", "-f", config, "-E", join(dir.path, "sshd.log")],
    stdout: "null",
    stderr: "null",
  }).spawn();
  for (let i = 0;; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      break;
    } catch (error) {
      if (i > 200) {
        throw new Error(
          `sshd did not come up on port ${port}: ${await Deno.readTextFile(join(dir.path, "sshd.log")).catch(() =>
            error
          )}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }
  return {
    port,
    knownHosts,
    [Symbol.asyncDispose]: async () => {
      child.kill("SIGTERM");
      await child.status;
      await dir[Symbol.asyncDispose]();
    },
  };
}
