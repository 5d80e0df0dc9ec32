/**
 * takeRemoteLock(): the remote lock's rules over an in-memory lock entry, with the interleavings
 * a real server rarely shows on demand (two takers of a stale lock at once, a refresh that
 * fails, a lock taken over while its run goes on). tests/sftp_test.ts and tests/s3_test.ts
 * check the same lock through the real backends.
 */
import assert from "node:assert/strict";
import { type LockEntry, takeRemoteLock } from "../lib/backend/remote_lock.ts";
import { LockedError } from "../lib/model/errors.ts";
import { setupLogging } from "../lib/log.ts";
import { waitFor } from "./helpers.ts";

/** A lock entry held in memory: one object, its text and a version that each write bumps. */
class Slot {
  text: string | undefined;
  version = 0;
  /** Writes that honour conditions (as radosgw does); false: as a server that ignores them (or SFTP). */
  constructor(readonly conditional = true) {}
  write(text: string | undefined): void {
    this.text = text;
    this.version++;
  }
  info(): { host: string; pid: number; time: number; id?: string } {
    return JSON.parse(this.text!);
  }
}

/** One run's view of `slot`, as a backend gives it: every call yields once, so that concurrent runs interleave. */
function entryOf(slot: Slot, faults: { replace?: () => never } = {}): LockEntry & { calls: string[] } {
  let seen: number | undefined;
  const calls: string[] = [];
  const tick = () => new Promise<void>((resolve) => setTimeout(resolve, 0));
  return {
    calls,
    async create(text) {
      calls.push("create");
      await tick();
      if (slot.text !== undefined) return false;
      slot.write(text);
      seen = slot.version;
      return true;
    },
    async read() {
      calls.push("read");
      await tick();
      seen = slot.version;
      return slot.text;
    },
    async replace(text) {
      calls.push("replace");
      await tick();
      faults.replace?.();
      if (slot.conditional && slot.version !== seen) return false;
      slot.write(text);
      seen = slot.version;
      return true;
    },
    async remove() {
      calls.push("remove");
      await tick();
      slot.write(undefined);
    },
  };
}

/** Log lines written while `fn` runs. */
async function logged(fn: () => Promise<void>): Promise<string[]> {
  const lines: string[] = [];
  await using _logging = await setupLogging({ console: { out: (l) => lines.push(l), err: (l) => lines.push(l) } });
  await fn();
  return lines;
}

const here = { display: "mem://replica", host: "this-host" };
const stale = () => JSON.stringify({ host: "gone-host", pid: 7, time: Date.now() - 11 * 60_000 });

Deno.test("takeRemoteLock() creates the entry, refuses a second run, and removes it on release", async () => {
  const slot = new Slot();
  const lock = await takeRemoteLock(entryOf(slot), { ...here, pid: 11 });
  assert.equal(slot.info().pid, 11);
  assert.equal(slot.info().host, "this-host");
  await assert.rejects(
    takeRemoteLock(entryOf(slot), { ...here, host: "other", pid: 12 }),
    (error: Error) =>
      error instanceof LockedError &&
      /^Another foldersync is already syncing into the replica: 'mem:\/\/replica' \(held by process 11 on 'this-host', refreshed 0 min ago\)$/
        .test(error.message),
  );
  assert.equal(slot.info().pid, 11, "the refused run wrote nothing");
  await lock.release();
  assert.equal(slot.text, undefined);
  await lock[Symbol.asyncDispose](); // a second release does nothing
  assert.equal(slot.text, undefined);
});

Deno.test("takeRemoteLock() takes over a stale lock with a warning: too old, or of a dead process of this host", async (t) => {
  for (
    const [what, text] of <[string, string][]> [
      ["not refreshed for 11 min", stale()],
      ["of a dead process here", JSON.stringify({ host: "this-host", pid: 99, time: Date.now() })],
      ["unreadable", "{not json"],
    ]
  ) {
    await t.step(what, async () => {
      const slot = new Slot();
      slot.write(text);
      const lines = await logged(async () => {
        await using _lock = await takeRemoteLock(entryOf(slot), { ...here, pid: 11, alive: (pid) => pid !== 99 });
        assert.equal(slot.info().pid, 11);
      });
      assert.equal(slot.text, undefined, "released");
      assert.ok(lines.some((l) => /WARN.*Took over the stale lock of 'mem:\/\/replica'/.test(l)), lines.join("\n"));
    });
  }
  await t.step("a live process of this host is respected", async () => {
    const slot = new Slot();
    slot.write(JSON.stringify({ host: "this-host", pid: 99, time: Date.now() }));
    await assert.rejects(takeRemoteLock(entryOf(slot), { ...here, alive: () => true }), LockedError);
  });
});

Deno.test("takeRemoteLock(): of two runs taking over one stale lock at once, only one wins", async (t) => {
  for (const conditional of [true, false]) {
    await t.step(
      conditional ? "conditional writes refuse the later one" : "without conditions, the read-back decides",
      async () => {
        const slot = new Slot(conditional);
        slot.write(stale());
        const a = entryOf(slot);
        const b = entryOf(slot);
        const runs = await logged(async () => {
          const results = await Promise.allSettled([
            takeRemoteLock(a, { ...here, pid: 1 }),
            takeRemoteLock(b, { ...here, pid: 2 }),
          ]);
          const won = results.filter((r) => r.status === "fulfilled");
          const lost = results.filter((r) => r.status === "rejected");
          assert.equal(won.length, 1, JSON.stringify(results.map((r) => r.status)));
          assert.equal(lost.length, 1);
          const reason = (lost[0] as PromiseRejectedResult).reason;
          assert.ok(reason instanceof LockedError, String(reason));
          assert.match(reason.message, /took over the replica's stale lock first: 'mem:\/\/replica'/);
          const winner = results.indexOf(won[0]!) + 1;
          assert.equal(slot.info().pid, winner, "the entry is the winner's");
          // Both got as far as replacing the stale entry: the race was real.
          assert.ok(a.calls.includes("replace") && b.calls.includes("replace"), `${a.calls} / ${b.calls}`);
          await (won[0] as PromiseFulfilledResult<AsyncDisposable>).value[Symbol.asyncDispose]();
        });
        assert.equal(slot.text, undefined);
        assert.equal(runs.filter((l) => /Took over/.test(l)).length, conditional ? 1 : 2);
      },
    );
  }
});

Deno.test("takeRemoteLock() refreshes the entry, and warns when a refresh fails or the lock is another's now", async (t) => {
  await t.step("refreshed: the time moves on", async () => {
    const slot = new Slot();
    await using _lock = await takeRemoteLock(entryOf(slot), { ...here, refreshMs: 20 });
    const first = slot.info().time;
    const version = slot.version;
    await waitFor(() => slot.version > version + 1, 5000, "two refreshes");
    assert.ok(slot.info().time >= first);
  });
  await t.step("a failing refresh warns and the run goes on; the entry is still removed", async () => {
    const slot = new Slot();
    let failing = true;
    const entry = entryOf(slot, {
      replace: () => {
        if (failing) throw new Error("Connection reset");
        return undefined as never;
      },
    });
    const lines: string[] = [];
    await using _logging = await setupLogging({ console: { out: (l) => lines.push(l), err: (l) => lines.push(l) } });
    const lock = await takeRemoteLock(entry, { ...here, refreshMs: 20 });
    await waitFor(
      () => lines.some((l) => /WARN.*Cannot refresh the lock of 'mem:\/\/replica': Error: Connection reset/.test(l)),
      5000,
      "the warning",
    );
    failing = false;
    await lock.release();
    assert.equal(slot.text, undefined);
  });
  await t.step("a lock taken over by another run is neither refreshed nor removed", async () => {
    const slot = new Slot();
    const lines: string[] = [];
    await using _logging = await setupLogging({ console: { out: (l) => lines.push(l), err: (l) => lines.push(l) } });
    const lock = await takeRemoteLock(entryOf(slot), { ...here, refreshMs: 20 });
    const other = JSON.stringify({ host: "other", pid: 5, time: Date.now(), id: "theirs" });
    slot.write(other);
    await waitFor(
      () =>
        lines.some((l) =>
          /WARN.*Cannot refresh the lock of 'mem:\/\/replica': another foldersync holds it now/.test(l)
        ),
      5000,
      "the warning",
    );
    await lock.release();
    assert.equal(slot.text, other, "another run's lock is left alone");
  });
});

Deno.test("takeRemoteLock() creates the entry again when it was released between a failed create and the read", async () => {
  const slot = new Slot();
  slot.write(JSON.stringify({ host: "other", pid: 5, time: Date.now() }));
  const entry = entryOf(slot);
  const create = entry.create.bind(entry);
  let first = true;
  entry.create = async (text) => {
    const made = await create(text);
    if (first) slot.write(undefined); // the holder released it just after our create failed
    first = false;
    return made;
  };
  await using _lock = await takeRemoteLock(entry, { ...here, pid: 3 });
  assert.equal(slot.info().pid, 3);
  assert.deepEqual(entry.calls.slice(0, 3), ["create", "read", "create"]);
});
