import assert from "node:assert/strict";
import { isRemote, parseTarget } from "../lib/backend/registry.ts";
import { UsageError } from "../lib/model/errors.ts";

Deno.test("parseTarget() tells local folders from SFTP and S3 replicas", async (t) => {
  await t.step("local paths, Windows drives and ./a:b stay local", () => {
    const drives = Deno.build.os === "windows" ? ["C:/backup"] : [];
    for (const path of ["/backup", "backup", "./a:b", "C:\\backup", "dir/a:b", "", ...drives]) {
      assert.equal(parseTarget(path).kind, "local", path);
    }
  });
  await t.step("rsync's [user@]host:path", () => {
    assert.deepEqual(parseTarget("deploy@web1:/var/www/"), {
      kind: "sftp",
      user: "deploy",
      host: "web1",
      path: "/var/www",
      display: "deploy@web1:/var/www/",
    });
    assert.equal((parseTarget("web1:") as { path: string }).path, ".");
    assert.equal((parseTarget("web1:site") as { path: string }).path, "site");
    assert.equal((parseTarget("[::1]:/x") as { host: string }).host, "::1");
    assert.throws(() => parseTarget("@web1:/x"), UsageError);
  });
  await t.step("sftp:// URLs: port, user, escapes, the login folder", () => {
    const t1 = parseTarget("sftp://me@h:2222/srv/my%20site/");
    assert.deepEqual(t1, {
      kind: "sftp",
      user: "me",
      host: "h",
      port: 2222,
      path: "/srv/my site",
      display: "sftp://me@h:2222/srv/my%20site/",
    });
    assert.equal((parseTarget("sftp://h/~/site") as { path: string }).path, "site");
    assert.equal((parseTarget("sftp://h") as { path: string }).path, ".");
    assert.equal((parseTarget("sftp://h/") as { path: string }).path, "/");
    assert.equal((parseTarget("SFTP://h/x") as { kind: string }).kind, "sftp");
    assert.throws(() => parseTarget("sftp://h:99999/x"), UsageError);
  });
  await t.step("s3:// URLs: bucket and prefix", () => {
    assert.deepEqual(parseTarget("s3://my-bucket"), {
      kind: "s3",
      bucket: "my-bucket",
      prefix: "",
      display: "s3://my-bucket",
    });
    assert.equal((parseTarget("s3://my-bucket/a/b/") as { prefix: string }).prefix, "a/b");
    assert.throws(() => parseTarget("s3://ab"), /not a bucket name/);
    assert.throws(() => parseTarget("s3://bucket/a//b"), /empty, '.' or '..'/);
    assert.throws(() => parseTarget("s3://bucket/a/../b"), UsageError);
  });
  await t.step("isRemote()", () => {
    assert.equal(isRemote("/x"), false);
    assert.equal(isRemote("h:/x"), true);
    assert.equal(isRemote("s3://A"), true);
  });
});
